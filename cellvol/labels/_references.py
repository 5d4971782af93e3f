"""External references of a segment: database identifiers, checked and linked.

A segment of a cellular volume (a mitochondrion, a ribosome, a membrane) is annotated with
identifiers from the databases that describe it, so that archives can link volumes to proteins,
structures and ontology terms. Each reference names a resource and an accession; the accession
is checked against the resource's published format, and a URL is built for it.

Known resources: UniProt, GO, PDB, EMDB, EMPIAR, ChEBI, InterPro, Pfam, NCBITaxon, CL (Cell
Ontology). Resource names are matched without regard to case and stored in their canonical
spelling.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cellvol.errors import InvalidInputError

__all__ = ["RESOURCES", "Reference", "Resource", "parse_references"]


@dataclass(frozen=True, slots=True)
class Resource:
    """A database whose accessions can be referenced.

    Attributes
    ----------
    name
        Canonical spelling, as stored.
    pattern
        The accession format (matched in full).
    url
        Link template; ``{accession}`` is replaced by the accession (``{obo}`` by the accession
        with ``:`` as ``_``, as OBO PURLs spell it).
    examples
        Valid accessions, quoted in error messages.
    """

    name: str
    pattern: re.Pattern[str]
    url: str
    examples: tuple[str, ...]


def _resource(name: str, pattern: str, url: str, *examples: str) -> Resource:
    return Resource(name, re.compile(pattern), url, examples)


RESOURCES: dict[str, Resource] = {
    resource.name.lower(): resource
    for resource in (
        # UniProt's own accession format, with an optional isoform suffix.
        _resource(
            "UniProt",
            r"(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})(?:-\d+)?",
            "https://www.uniprot.org/uniprotkb/{accession}/entry",
            "P69905",
            "A0A0B4J2F0",
        ),
        _resource(
            "GO",
            r"GO:\d{7}",
            "https://amigo.geneontology.org/amigo/term/{accession}",
            "GO:0005739",
        ),
        # Four-character codes, and the extended ids the wwPDB introduces (pdb_ + 8 characters).
        _resource(
            "PDB",
            r"[1-9][A-Za-z0-9]{3}|pdb_\d{5}[A-Za-z0-9]{3}",
            "https://www.rcsb.org/structure/{accession}",
            "1abc",
            "pdb_00001abc",
        ),
        _resource("EMDB", r"EMD-\d{4,}", "https://www.ebi.ac.uk/emdb/{accession}", "EMD-1234"),
        _resource(
            "EMPIAR",
            r"EMPIAR-\d{5,}",
            "https://www.ebi.ac.uk/empiar/{accession}/",
            "EMPIAR-10001",
        ),
        _resource(
            "ChEBI",
            r"CHEBI:\d+",
            "https://www.ebi.ac.uk/chebi/searchId.do?chebiId={accession}",
            "CHEBI:15377",
        ),
        _resource(
            "InterPro",
            r"IPR\d{6}",
            "https://www.ebi.ac.uk/interpro/entry/InterPro/{accession}/",
            "IPR000001",
        ),
        _resource(
            "Pfam", r"PF\d{5}", "https://www.ebi.ac.uk/interpro/entry/pfam/{accession}/", "PF00001"
        ),
        _resource(
            "NCBITaxon",
            r"[1-9]\d*",
            "https://www.ncbi.nlm.nih.gov/Taxonomy/Browser/wwwtax.cgi?id={accession}",
            "9606",
        ),
        _resource("CL", r"CL:\d{7}", "http://purl.obolibrary.org/obo/{obo}", "CL:0000540"),
    )
}


@dataclass(frozen=True, slots=True)
class Reference:
    """One checked database reference: ``Reference.of("UniProt", "P69905")``."""

    resource: str
    accession: str

    @classmethod
    def of(cls, resource: str, accession: str) -> Reference:
        """Check ``accession`` against ``resource``'s format and return the reference.

        Raises
        ------
        InvalidInputError
            For an unknown resource (with the closest known names) or an accession that does
            not have the resource's format (with examples of ones that do).
        """
        known = _known(resource)
        text = accession.strip() if isinstance(accession, str) else accession
        if not isinstance(text, str) or not known.pattern.fullmatch(text):
            raise InvalidInputError(
                f"{accession!r} is not a valid {known.name} accession; expected the form of "
                + " or ".join(known.examples)
            )
        return cls(known.name, text)

    @property
    def url(self) -> str:
        """Where the accession's record is on the web."""
        template = RESOURCES[self.resource.lower()].url
        return template.format(accession=self.accession, obo=self.accession.replace(":", "_"))

    def to_json(self) -> dict[str, str]:
        """The stored form: resource, accession and URL."""
        return {"resource": self.resource, "accession": self.accession, "url": self.url}


def parse_references(items: Iterable[Any]) -> list[Reference]:
    """Check a list of references, each in any accepted form.

    Forms: mappings (``{"resource": ..., "accession": ...}``), ``(resource, accession)``
    pairs, :class:`Reference` objects, or ``"resource:accession"`` strings
    (``"UniProt:P69905"``; for GO, ChEBI and CL, ``"GO:0005739"`` alone also works).

    Raises
    ------
    InvalidInputError
        Naming the first malformed item and why.
    """
    if isinstance(items, str | bytes | Mapping):
        raise InvalidInputError(
            "references must be a list, e.g. [{'resource': 'UniProt', 'accession': 'P69905'}]"
        )
    references = []
    for item in items:
        if isinstance(item, Reference):
            references.append(Reference.of(item.resource, item.accession))
        elif isinstance(item, Mapping):
            extra = set(item) - {"resource", "accession", "url"}
            if extra or not {"resource", "accession"} <= set(item):
                raise InvalidInputError(
                    f"reference {dict(item)!r} must have exactly 'resource' and 'accession' "
                    f"keys{f'; unexpected: {sorted(extra)}' if extra else ''}"
                )
            references.append(Reference.of(item["resource"], item["accession"]))
        elif isinstance(item, tuple | list) and len(item) == 2:
            references.append(Reference.of(*item))
        elif isinstance(item, str):
            references.append(_from_text(item))
        else:
            raise InvalidInputError(
                f"reference {item!r} is neither a mapping, a (resource, accession) pair nor "
                "a 'resource:accession' string"
            )
    return references


def _from_text(text: str) -> Reference:
    prefix, sep, rest = text.strip().partition(":")
    if not sep:
        raise InvalidInputError(f"reference {text!r} needs a resource: 'UniProt:P69905'")
    known = RESOURCES.get(prefix.strip().lower())
    if known is not None and ":" in known.examples[0] and not known.pattern.fullmatch(rest):
        # Ontology terms carry their prefix in the accession itself: GO:0005739 is the GO
        # term, where 'chebi:CHEBI:15377' names the resource first.
        return Reference.of(known.name, text)
    return Reference.of(prefix, rest)


def _known(resource: Any) -> Resource:
    if isinstance(resource, str) and resource.strip().lower() in RESOURCES:
        return RESOURCES[resource.strip().lower()]
    names = [r.name for r in RESOURCES.values()]
    close = difflib.get_close_matches(str(resource), names, n=2, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise InvalidInputError(
        f"unknown resource {resource!r}{hint}; known resources: {', '.join(names)}"
    )
