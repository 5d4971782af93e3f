"""Database references of segments: formats checked, names canonical, links built."""

import pytest

from cellvol.errors import InvalidInputError
from cellvol.labels._references import RESOURCES, Reference, parse_references

VALID = [
    ("UniProt", "P69905", "https://www.uniprot.org/uniprotkb/P69905/entry"),
    ("uniprot", "A0A0B4J2F0", "https://www.uniprot.org/uniprotkb/A0A0B4J2F0/entry"),
    ("UniProt", "Q9Y6K9-2", "https://www.uniprot.org/uniprotkb/Q9Y6K9-2/entry"),
    ("GO", "GO:0005739", "https://amigo.geneontology.org/amigo/term/GO:0005739"),
    ("PDB", "1abc", "https://www.rcsb.org/structure/1abc"),
    ("pdb", "pdb_00001abc", "https://www.rcsb.org/structure/pdb_00001abc"),
    ("EMDB", "EMD-1234", "https://www.ebi.ac.uk/emdb/EMD-1234"),
    ("EMPIAR", "EMPIAR-10001", "https://www.ebi.ac.uk/empiar/EMPIAR-10001/"),
    ("ChEBI", "CHEBI:15377", "https://www.ebi.ac.uk/chebi/searchId.do?chebiId=CHEBI:15377"),
    ("InterPro", "IPR000001", "https://www.ebi.ac.uk/interpro/entry/InterPro/IPR000001/"),
    ("Pfam", "PF00001", "https://www.ebi.ac.uk/interpro/entry/pfam/PF00001/"),
    ("NCBITaxon", "9606", "https://www.ncbi.nlm.nih.gov/Taxonomy/Browser/wwwtax.cgi?id=9606"),
    ("CL", "CL:0000540", "http://purl.obolibrary.org/obo/CL_0000540"),
]


@pytest.mark.parametrize(("resource", "accession", "url"), VALID)
def test_valid_accessions_are_kept_with_a_link(resource: str, accession: str, url: str) -> None:
    reference = Reference.of(resource, accession)
    assert reference.resource == RESOURCES[resource.lower()].name
    assert reference.accession == accession
    assert reference.url == url
    assert reference.to_json() == {
        "resource": reference.resource,
        "accession": accession,
        "url": url,
    }


INVALID = [
    ("UniProt", "P6990"),
    ("UniProt", "p69905"),
    ("UniProt", "GO:0005739"),
    ("GO", "GO:123"),
    ("GO", "0005739"),
    ("PDB", "0abc"),
    ("PDB", "1abcd"),
    ("EMDB", "EMD-12"),
    ("EMDB", "1234"),
    ("EMPIAR", "EMPIAR-1"),
    ("ChEBI", "15377"),
    ("NCBITaxon", "human"),
    ("CL", "CL:540"),
]


@pytest.mark.parametrize(("resource", "accession"), INVALID)
def test_malformed_accessions_are_refused_with_examples(resource: str, accession: str) -> None:
    known = RESOURCES[resource.lower()]
    with pytest.raises(InvalidInputError, match=rf"not a valid {known.name} accession.*expected"):
        Reference.of(resource, accession)


def test_unknown_resources_suggest_the_closest() -> None:
    with pytest.raises(
        InvalidInputError, match=r"unknown resource 'Uniprott' \(did you mean 'UniProt'"
    ):
        Reference.of("Uniprott", "P69905")
    with pytest.raises(InvalidInputError, match="known resources: UniProt, GO, PDB"):
        Reference.of("Wikipedia", "Mitochondrion")


def test_references_in_every_accepted_form() -> None:
    parsed = parse_references(
        [
            {"resource": "UniProt", "accession": "P69905"},
            ("GO", "GO:0005739"),
            "EMDB:EMD-1234",
            "GO:0005743",
            "chebi:CHEBI:15377",
            Reference.of("PDB", "1abc"),
        ]
    )
    assert [(r.resource, r.accession) for r in parsed] == [
        ("UniProt", "P69905"),
        ("GO", "GO:0005739"),
        ("EMDB", "EMD-1234"),
        ("GO", "GO:0005743"),
        ("ChEBI", "CHEBI:15377"),
        ("PDB", "1abc"),
    ]


def test_malformed_reference_items_are_named() -> None:
    with pytest.raises(InvalidInputError, match="must be a list"):
        parse_references("UniProt:P69905")
    with pytest.raises(InvalidInputError, match=r"exactly 'resource' and 'accession'.*'db'"):
        parse_references([{"resource": "UniProt", "accession": "P69905", "db": "x"}])
    with pytest.raises(InvalidInputError, match="needs a resource"):
        parse_references(["P69905"])
    with pytest.raises(InvalidInputError, match="neither a mapping"):
        parse_references([42])
