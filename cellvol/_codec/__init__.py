"""Chunk bytes: sharded encoding on write, direct chunk reads and their cache on read.

Private. The one interface the read and write layers share for array bytes: ``_shard`` encodes
a whole shard (chunks, CRC32C, index) as zarr's ``sharding_indexed`` codec stores it;
``_layout`` reads off an array's metadata how its chunks are stored; ``_reader`` fetches and
decodes the chunks a box needs; ``_cache`` keeps decoded chunks; ``_keys`` maps selections and
shard positions to keys. Nothing here knows OME metadata.
"""
