# cellvol's quick start is two commands:
#   make demo   install cellvol into .venv and write a synthetic tomogram as an OME-Zarr pyramid
#   make test   install the test dependencies into .venv and run the test suite
# Both find a Python >= 3.12 by themselves (tools/find-python) and say what to install if none.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
# pip on some machines warns about unreachable local indexes on every package; hide only that.
QUIET_PIP = 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }

.PHONY: demo test install install-dev bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/cellvol demo $(DEMO_ARGS)

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# Every number in docs/benchmarks.md, in one run (50-85 minutes, by the machine's speed; inputs in /tmp/cellvol-bench).
bench: $(VENV)/.installed-dev
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt $(QUIET_PIP)
	$(PY) benchmarks/compare_pyramid.py --size-gib 1 --repeat 3 --out benchmarks/results/pyramid-1gib.json
	$(PY) benchmarks/compare_pyramid.py --size-gib 4 --out benchmarks/results/pyramid-4gib.json
	$(PY) benchmarks/compare_pyramid.py --size-gib 16 --tools cellvol,tensorstore --out benchmarks/results/pyramid-16gib.json
	$(PY) benchmarks/compare_pyramid.py --dtype uint16 --out benchmarks/results/pyramid-1gib-uint16.json
	$(PY) benchmarks/compare_pyramid.py --dtype float32 --out benchmarks/results/pyramid-1gib-float32.json
	$(PY) benchmarks/compare_pyramid.py --geometry 3D-SEM --out benchmarks/results/pyramid-1gib-3dsem.json
	$(PY) benchmarks/compare_pyramid.py --dtype uint32 --out benchmarks/results/pyramid-1gib-labels.json
	$(PY) benchmarks/compare_pyramid.py --data-dir /dev/shm/cellvol-bench --tools cellvol-default-layout,cellvol,tensorstore --repeat 3 --out benchmarks/results/pyramid-1gib-tmpfs.json
	$(PY) benchmarks/profile_build.py --data-dir /dev/shm/cellvol-bench
	$(PY) benchmarks/ingest_scale.py
	$(PY) benchmarks/first_plane.py
	$(PY) benchmarks/read_planes.py
	$(PY) benchmarks/serve_load.py
	$(PY) benchmarks/cluster_scaling.py
	$(PY) benchmarks/scaling.py
	$(PY) benchmarks/verify_pack.py --sizes 1,16 --data-dir /tmp/cellvol-bench
	$(PY) benchmarks/s3_throughput.py --size-gib 1
	$(PY) benchmarks/meshes.py
	$(PY) benchmarks/first_frame.py
	$(PY) -m pytest benchmarks/suite -q -p no:cacheprovider --benchmark-autosave --benchmark-json=benchmarks/results/suite-small.json
	$(PY) benchmarks/plots.py

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(PY):
	@python="$$(tools/find-python)"; echo "Creating $(VENV) with $$python"; "$$python" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip $(QUIET_PIP)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e . $(QUIET_PIP)
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]" $(QUIET_PIP)
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) cellvol-demo.ome.zarr site .pytest_cache .mypy_cache .ruff_cache
