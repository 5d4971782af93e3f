"""RO-Crate metadata: ``ro-crate-metadata.json`` at an image's root, for archives.

The crate (RO-Crate 1.1, built with ``rocrate``) describes what the image already stores, and
nothing else, so it can be rebuilt at any time from the store:

- the root Dataset ``./`` is the image: its name, a description (shape, type, voxel size,
  levels), ``datePublished`` (the day its write began, from cellvol's provenance record) and
  ``hasPart``: the root ``zarr.json``, the write manifest, each level and the label images;
- each level (``0/``, ``1/``...) and label image (``labels/<name>/``, with its own levels) is a
  Dataset with its shape, element type, chunk and shard shapes, codecs and scale as
  ``PropertyValue`` entities, and the bytes and shard count its write manifest records;
- the input files are ``File`` entities (``#input/<name>``: they are not in the crate) with
  ``contentSize`` and ``sha256``;
- a ``CreateAction`` per written image has ``instrument`` = cellvol (a
  ``SoftwareApplication`` with its version and the libraries it ran with), ``object`` = the
  inputs and the write's parameters as ``PropertyValue`` entities, ``result`` = the image;
- each annotated segment of a label image is a ``DefinedTerm`` (its label value as
  ``termCode``) whose ``identifier`` entries link to the external references (UniProt, GO...),
  themselves ``DefinedTerm`` entities at their canonical URLs; the label image is ``about`` them.

The bytes are deterministic: sorted keys, the graph sorted by ``@id``, and no date but the
recorded one, so a resumed write and a rewritten crate leave the store unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from zarr.abc.store import Store

from cellvol._store import (
    make_durable,
    read_bytes,
    read_objects,
    write_bytes,
)
from cellvol.errors import IntegrityError, MetadataError, NotOMEZarrError
from cellvol.ome._manifest import MANIFEST_KEY, Manifest, parse_manifest, write_day
from cellvol.ome._metadata import PROVENANCE_KEY, Multiscale, ome_namespace, read_multiscale

__all__ = [
    "CRATE_KEY",
    "RO_CRATE_VERSION",
    "build_crate",
    "crate_problems",
    "encode_crate",
    "write_crate",
]

CRATE_KEY: Final = "ro-crate-metadata.json"
"""Where the crate is, relative to the image's root."""
RO_CRATE_VERSION: Final = "1.1"
_CONTEXT_11: Final = f"https://w3id.org/ro/crate/{RO_CRATE_VERSION}/context"
_LABELS: Final = "labels"
_DOCUMENT: Final = "zarr.json"
# Unit Ontology terms for the length units OME-Zarr names, so that a machine reads the scale.
_UNIT_CODES: Final = {
    "angstrom": "http://purl.obolibrary.org/obo/UO_0000019",
    "nanometer": "http://purl.obolibrary.org/obo/UO_0000018",
    "micrometer": "http://purl.obolibrary.org/obo/UO_0000017",
    "millimeter": "http://purl.obolibrary.org/obo/UO_0000016",
}
# Media types of the input formats that have one, by a word of the format cellvol records.
_MEDIA_TYPES: Final = {"TIFF": "image/tiff", "HDF5": "application/x-hdf5"}


def write_crate(store: Store, where: str) -> bytes:
    """Write (or refresh) the image's ``ro-crate-metadata.json``, atomically and durably.

    Parameters
    ----------
    store
        The image's store, opened for writing, its root the image group.
    where
        The image's location, for messages.

    Returns
    -------
    bytes
        What was written.

    Raises
    ------
    NotOMEZarrError
        If the root holds no readable OME-Zarr multiscales.
    """
    data = encode_crate(build_crate(store, where))
    write_bytes(store, CRATE_KEY, data)
    make_durable(store, [CRATE_KEY])
    return data


def encode_crate(document: Mapping[str, Any]) -> bytes:
    """A crate's bytes: the graph sorted by ``@id``, keys sorted, indented UTF-8 JSON."""
    graph = sorted(document["@graph"], key=lambda entity: str(entity["@id"]))
    body = {"@context": document["@context"], "@graph": graph}
    return json.dumps(body, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False).encode()


def build_crate(store: Store, where: str) -> dict[str, Any]:
    """The RO-Crate JSON-LD document describing the image in ``store`` (see the module notes).

    Raises
    ------
    NotOMEZarrError
        If the root holds no readable OME-Zarr multiscales.
    """
    from rocrate.rocrate import ROCrate  # imported by writers only: it pulls in much

    root = _read_image(store, "", where)
    if root is None:
        raise NotOMEZarrError(
            f"{where}: no OME-Zarr image (zarr.json with multiscales) at the root to describe "
            f"in {CRATE_KEY}"
        )
    crate = ROCrate(version=RO_CRATE_VERSION)
    # The 1.1 context predates schema.org's sha256: defined here, as 1.1 says ad hoc terms are.
    crate.metadata.extra_terms["sha256"] = "http://schema.org/sha256"
    graph = _Graph(store)
    ngff = f"https://ngff.openmicroscopy.org/{root.multiscale.version}/"
    graph.add(ngff, "CreativeWork", name=f"OME-NGFF (OME-Zarr) {root.multiscale.version}")
    parts = [graph.file(_DOCUMENT, "the image's OME-Zarr metadata")]
    if root.manifest_raw is not None:
        parts.append(graph.file(MANIFEST_KEY, "cellvol's write manifest"))
    parts += graph.levels(root)
    graph.action(root, "./")
    labels = [_read_image(store, f"{_LABELS}/{name}/", where) for name in _label_names(store)]
    label_parts = [graph.label_image(image) for image in labels if image is not None]
    if label_parts:
        parts.append(graph.add(f"{_LABELS}/", "Dataset", name="label images", hasPart=label_parts))
    described = {
        "name": root.multiscale.name or where.rstrip("/").rsplit("/", 1)[-1],
        "description": _describe_image(root),
        "datePublished": _date(root.provenance, store),
        "conformsTo": _ref(ngff),
        "hasPart": parts,
    }
    for key, value in described.items():
        crate.root_dataset[key] = value
    for entity in graph.entities.values():
        crate.add_jsonld(dict(entity))  # refuses an @id twice: a bug here, not a crate
    document: dict[str, Any] = crate.metadata.generate()
    return document


def crate_problems(raw: bytes, *, as_written: bool = False) -> tuple[list[str], list[str]]:
    """What is wrong with a stored crate, in words, and the store keys it says the image holds.

    Nothing is wrong when the crate is RO-Crate 1.1 JSON-LD (``rocrate`` loads it) and its root
    dataset and metadata descriptor have what RO-Crate 1.1 requires. The keys (each listed
    file, and the ``zarr.json`` of each listed dataset) are for the caller to look for in the
    store.

    Parameters
    ----------
    raw
        The stored crate.
    as_written
        Whether ``raw`` matches the SHA-256 the image's digests record for it: then it is the
        crate cellvol built with ``rocrate`` (importing which is costly) and a structural check
        suffices; otherwise ``rocrate`` must load it.
    """
    try:
        document = json.loads(raw)
    except ValueError as exc:
        return [f"not valid JSON ({exc})"], []
    if not isinstance(document, dict) or "@context" not in document:
        return ["not JSON-LD: no @context"], []
    if as_written:
        problems = _structure_problems(document)
        if problems:
            return problems, []
    else:
        from rocrate.rocrate import ROCrate

        try:
            ROCrate(json.loads(raw))  # a copy: rocrate takes apart the document it reads
        except Exception as exc:  # rocrate raises what its parser meets: any is a bad crate
            return [f"rocrate cannot load it ({type(exc).__name__}: {exc})"], []
    # The rules on the stored entities: rocrate's own objects fill in defaults (a date).
    graph = {e.get("@id"): e for e in document.get("@graph") or () if isinstance(e, dict)}
    root, descriptor = graph.get("./") or {}, graph.get(CRATE_KEY) or {}
    problems = [
        f"the root dataset has no {field}"
        for field in ("name", "description", "datePublished")
        if not isinstance(root.get(field), str) or not root[field]
    ]
    if not descriptor.get("conformsTo") or descriptor.get("about") != {"@id": "./"}:
        problems.append(f"the descriptor {CRATE_KEY} lacks conformsTo or about ./")
    parts = [
        key
        for key, entity in graph.items()
        if isinstance(key, str)
        and key not in ("./", CRATE_KEY)
        and {"File", "Dataset"} & set(_types(entity.get("@type")))
    ]
    local = [p for p in parts if not p.startswith("#") and "://" not in p]
    return problems, sorted({f"{p}{_DOCUMENT}" if p.endswith("/") else p for p in local})


def _structure_problems(document: Mapping[str, Any]) -> list[str]:
    """What keeps ``document`` from being a crate as cellvol writes one, without ``rocrate``.

    The RO-Crate 1.1 context, a graph of entities each with an ``@id`` and an ``@type``, and
    the metadata descriptor and root dataset in it.
    """
    context = document["@context"]
    contexts = context if isinstance(context, list) else [context]
    if _CONTEXT_11 not in contexts:
        return [f"its @context is not RO-Crate {RO_CRATE_VERSION}'s ({_CONTEXT_11})"]
    graph = document.get("@graph")
    if not isinstance(graph, list) or not all(
        isinstance(e, dict) and isinstance(e.get("@id"), str) and "@type" in e for e in graph
    ):
        return ["its @graph is not a list of entities, each with an @id and an @type"]
    ids = {e["@id"] for e in graph}
    return [f"it has no {what}" for what in (CRATE_KEY, "./") if what not in ids]


def _types(kind: Any) -> list[str]:
    return [kind] if isinstance(kind, str) else [str(k) for k in kind or ()]


# -- reading what the image stores -------------------------------------------------------------


class _Image:
    """One image group as stored: its multiscale, provenance, level arrays and manifest."""

    def __init__(
        self,
        prefix: str,
        attributes: Mapping[str, Any],
        multiscale: Multiscale,
        arrays: Sequence[Mapping[str, Any] | None],
        manifest_raw: bytes | None,
        where: str,
    ) -> None:
        self.prefix = prefix
        self.attributes = attributes
        self.multiscale = multiscale
        self.arrays = arrays
        self.manifest_raw = manifest_raw
        self.manifest: Manifest | None = None
        try:
            self.manifest = parse_manifest(manifest_raw, f"{where}/{prefix}")
        except IntegrityError:
            self.manifest = None  # described without it; verify reports the damage
        record = attributes.get(PROVENANCE_KEY)
        self.provenance: Mapping[str, Any] = record if isinstance(record, Mapping) else {}


def _read_image(store: Store, prefix: str, where: str) -> _Image | None:
    raw = read_bytes(store, f"{prefix}{_DOCUMENT}")
    document = _json_object(raw)
    if document is None:
        return None
    attributes = document.get("attributes") or {}
    try:
        multiscale = read_multiscale(attributes, where=f"{where}/{prefix}".rstrip("/"))
    except MetadataError:
        return None
    if multiscale is None:
        return None
    keys = [f"{prefix}{dataset.path}/{_DOCUMENT}" for dataset in multiscale.datasets]
    found = read_objects(store, [*keys, f"{prefix}{MANIFEST_KEY}"])
    arrays = [_json_object(raw) for raw in found[:-1]]
    return _Image(prefix, attributes, multiscale, arrays, found[-1], where)


def _label_names(store: Store) -> list[str]:
    document = _json_object(read_bytes(store, f"{_LABELS}/{_DOCUMENT}"))
    names = ome_namespace((document or {}).get("attributes") or {}).get("labels")
    if not isinstance(names, list):
        return []
    return [name for name in names if isinstance(name, str) and name and "/" not in name]


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _date(record: Mapping[str, Any], store: Store) -> str:
    """The recorded day of the write.

    For images that record none (another tool's, an older cellvol's): the day an earlier
    crate of the image was published, so that rewriting it changes nothing else; else today
    (UTC, or ``SOURCE_DATE_EPOCH``'s day).
    """
    date = record.get("date")
    if isinstance(date, str):
        return date
    earlier = _json_object(read_bytes(store, CRATE_KEY))
    for entity in (earlier or {}).get("@graph", []):
        if isinstance(entity, dict) and entity.get("@id") == "./":
            published = entity.get("datePublished")
            if isinstance(published, str):
                return published
    return write_day()


def _image_name(image: _Image) -> str:
    """``image`` for the image itself, ``label image <name>`` for a label image."""
    name = image.prefix.rstrip("/").rsplit("/", 1)[-1]
    return f"label image {name}" if name else "image"


def _describe_image(image: _Image) -> str:
    multiscale = image.multiscale
    array = image.arrays[0] or {}
    shape = " × ".join(str(n) for n in array.get("shape", ()))
    axes = ", ".join(multiscale.axis_names)
    spacing = " × ".join(f"{s:g}" for s in multiscale.spacing(0))
    unit = multiscale.spatial_unit() or "unit"
    kind = "label image" if "image-label" in ome_namespace(image.attributes) else "image"
    text = (
        f"A {len(multiscale.axes)}-D {kind} of {shape} ({axes}) {array.get('data_type', '')} "
        f"elements, voxel size {spacing} {unit}, stored as a multiscale OME-Zarr "
        f"{multiscale.version} pyramid of {len(multiscale.datasets)} "
        f"level{'s' if len(multiscale.datasets) > 1 else ''}."
    )
    source = image.provenance.get("source")
    if isinstance(source, str):
        text += f" Written by cellvol from {source}."
    return " ".join(text.split())


# -- the graph ---------------------------------------------------------------------------------


def _ref(identifier: str) -> dict[str, str]:
    return {"@id": identifier}


def _text(value: Any) -> Any:
    """A property value: strings, numbers and booleans as they are, the rest as compact JSON."""
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class _Graph:
    """The crate's entities beyond the root and the metadata descriptor, by ``@id``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.entities: dict[str, dict[str, Any]] = {}

    def add(self, entity_id: str, kind: str | list[str], /, **properties: Any) -> dict[str, str]:
        entity = {"@id": entity_id, "@type": kind}
        entity.update({k: v for k, v in properties.items() if v is not None and v != []})
        self.entities[entity_id] = entity
        return _ref(entity_id)

    def file(self, key: str, description: str) -> dict[str, str]:
        """A stored object as a File, with its size and SHA-256."""
        data = read_bytes(self.store, key) or b""
        return self.add(
            key,
            "File",
            name=key,
            description=description,
            encodingFormat="application/json",
            contentSize=str(len(data)),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def value(self, identifier: str, name: str, value: Any, **extra: Any) -> dict[str, str]:
        return self.add(identifier, "PropertyValue", name=name, value=_text(value), **extra)

    def levels(self, image: _Image) -> list[dict[str, str]]:
        """Each level of ``image`` as a Dataset with its layout."""
        multiscale = image.multiscale
        unit = multiscale.spatial_unit()
        parts = []
        for number, (dataset, array) in enumerate(
            zip(multiscale.datasets, image.arrays, strict=True)
        ):
            base = f"{image.prefix}{dataset.path}/"
            layout = _layout(array or {})
            properties = [
                self.value(f"#{base}{field}", field, value) for field, value in layout.items()
            ]
            unit_extra = {"unitText": unit, "unitCode": _UNIT_CODES.get(unit or "")}
            properties.append(self.value(f"#{base}scale", "scale", dataset.scale, **unit_extra))
            properties.append(
                self.value(f"#{base}translation", "translation", dataset.translation, **unit_extra)
            )
            shards = image.manifest.shards.get(dataset.path) if image.manifest else None
            stored = sum(size for size, _ in shards.values()) if shards else None
            if shards:
                properties.append(self.value(f"#{base}shard_count", "shard count", len(shards)))
            shape = " × ".join(str(n) for n in layout.get("shape", ()))
            parts.append(
                self.add(
                    base,
                    "Dataset",
                    name=f"{_image_name(image)} level {number}",
                    description=f"Pyramid level {number}: a zarr v3 array of {shape} voxels.",
                    contentSize=str(stored) if stored is not None else None,
                    additionalProperty=properties,
                )
            )
        return parts

    def label_image(self, image: _Image) -> dict[str, str]:
        """A label image as a Dataset: its levels, its write and its annotated segments."""
        base = image.prefix
        name = base.rstrip("/").rsplit("/", 1)[-1]
        levels = self.levels(image)
        document = self.file(
            f"{base}{_DOCUMENT}", f"label image {name!r}'s OME-Zarr metadata and annotations"
        )
        segments = self.segments(image, name)
        self.action(image, base)
        return self.add(
            base,
            "Dataset",
            name=name,
            description=_describe_image(image),
            hasPart=[document, *levels],
            about=segments,
        )

    def segments(self, image: _Image, name: str) -> list[dict[str, str]]:
        """Each annotated segment as a DefinedTerm linked to its external references."""
        image_label = ome_namespace(image.attributes).get("image-label") or {}
        terms = []
        for entry in image_label.get("properties") or ():
            if not isinstance(entry, Mapping) or "label-value" not in entry:
                continue
            references = [self.reference(r) for r in entry.get("references") or ()]
            if not references and "name" not in entry and "description" not in entry:
                continue  # only a voxel count: nothing an archive would look up
            value = entry["label-value"]
            terms.append(
                self.add(
                    f"#{image.prefix}segment/{value}",
                    "DefinedTerm",
                    name=str(entry.get("name", f"{name} segment {value}")),
                    description=entry.get("description"),
                    termCode=str(value),
                    identifier=[r for r in references if r is not None],
                )
            )
        return terms

    def reference(self, reference: Any) -> dict[str, str] | None:
        """An external reference, at its canonical URL, in its resource's term set."""
        if not isinstance(reference, Mapping):
            return None
        resource, accession = reference.get("resource"), reference.get("accession")
        if not isinstance(resource, str) or not isinstance(accession, str):
            return None
        url = reference.get("url")
        identifier = (
            url if isinstance(url, str) and url else f"#{quote(resource)}/{quote(accession)}"
        )
        resource_set = self.add(f"#resource/{quote(resource)}", "DefinedTermSet", name=resource)
        curie = (
            accession if accession.startswith(f"{resource.upper()}:") else f"{resource}:{accession}"
        )
        return self.add(
            identifier,
            "DefinedTerm",
            name=curie,
            termCode=accession,
            url=url if isinstance(url, str) else None,
            inDefinedTermSet=resource_set,
        )

    def software(self, record: Mapping[str, Any]) -> dict[str, str]:
        """Cellvol as a SoftwareApplication, with the libraries it ran with as requirements."""
        versions = record.get("software")
        versions = versions if isinstance(versions, Mapping) else {}
        requirements = []
        for package, version in sorted(versions.items()):
            if package == "cellvol" or not isinstance(version, str) or version == "not installed":
                continue
            requirements.append(
                self.add(
                    f"#software/{quote(package)}@{quote(version)}",
                    "SoftwareApplication",
                    name=package,
                    version=version,
                    url=f"https://pypi.org/project/{quote(package)}/{quote(version)}/",
                )
            )
        python = record.get("python")
        if isinstance(python, str):
            requirements.append(
                self.add(
                    f"#software/python@{quote(python)}",
                    "SoftwareApplication",
                    name="Python",
                    version=python,
                )
            )
        version = versions.get("cellvol")
        version = version if isinstance(version, str) else "unknown"
        return self.add(
            f"#software/cellvol@{quote(version)}",
            "SoftwareApplication",
            name="cellvol",
            version=version,
            description="Writes large 3-D microscopy volumes as pyramidal, sharded OME-Zarr.",
            softwareRequirements=requirements,
        )

    def action(self, image: _Image, result: str) -> None:
        """The write that made ``image``: a CreateAction, if cellvol recorded one."""
        record = image.provenance
        if not record:
            return
        base = f"#{image.prefix}write"
        inputs = self.inputs(image)
        parameters = record.get("parameters")
        parameters = parameters if isinstance(parameters, Mapping) else {}
        values = [
            self.value(f"{base}/parameter/{quote(key)}", key, value)
            for key, value in sorted(parameters.items())
        ]
        source = record.get("source")
        self.add(
            base,
            "CreateAction",
            name=f"cellvol wrote {'the image' if result == './' else result}",
            description=f"From {source}" if isinstance(source, str) else None,
            startTime=record.get("date") if isinstance(record.get("date"), str) else None,
            instrument=self.software(record),
            object=[*inputs, *values],
            result=_ref(result),
        )

    def inputs(self, image: _Image) -> list[dict[str, str]]:
        """The input files the provenance names, with their sizes and SHA-256s."""
        found = image.provenance.get("input")
        found = found if isinstance(found, Mapping) else {}
        details = found.get("details")
        kind = details.get("format") if isinstance(details, Mapping) else None
        words = kind.replace("-", " ").split() if isinstance(kind, str) else []
        media = next((_MEDIA_TYPES[w] for w in words if w in _MEDIA_TYPES), None)
        files = found.get("files")
        refs = []
        for entry in files if isinstance(files, list) else ():
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                continue
            size, digest = entry.get("bytes"), entry.get("sha256")
            refs.append(
                self.add(
                    f"#{image.prefix}input/{quote(entry['name'])}",
                    "File",
                    name=entry["name"],
                    description="An input file (not in this crate).",
                    contentSize=str(size) if isinstance(size, int) else None,
                    sha256=digest if isinstance(digest, str) and digest else None,
                    encodingFormat=media,
                )
            )
        return refs


def _layout(array: Mapping[str, Any]) -> dict[str, Any]:
    """A level's shape, element type, chunk and shard shapes and codecs from its zarr.json."""
    grid = (array.get("chunk_grid") or {}).get("configuration") or {}
    codecs = array.get("codecs") or []
    layout: dict[str, Any] = {"shape": array.get("shape"), "dtype": array.get("data_type")}
    outer = grid.get("chunk_shape")
    sharding = next(
        (c for c in codecs if isinstance(c, Mapping) and c.get("name") == "sharding_indexed"),
        None,
    )
    if sharding is not None:
        layout["chunks"] = (sharding.get("configuration") or {}).get("chunk_shape")
        layout["shards"] = outer
    else:
        layout["chunks"] = outer
    layout["codecs"] = codecs
    return {k: v for k, v in layout.items() if v is not None}
