# The only install script: every target builds .venv itself.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
# Debian libraries GPAW (the gpaw-lcao engine) is built against; apt-get runs only if one is missing
GPAW_DEBS := g++ libxc-dev libopenblas-dev libfftw3-dev
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv test demo clean replay-data

$(STAMP): pyproject.toml
	dpkg -s $(GPAW_DEBS) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(GPAW_DEBS); }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned first: the CPU build is what this project runs on (see DEVELOPERS.md)
	$(BIN)/pip install -q torch==2.13.0
	# GPAW (extra "gpaw") builds from its sdist with this siteconfig: C++ (26.x), serial, FFTW, and BLAS named
	# explicitly (without 'blas' the link test fails silently and GPAW builds with -DGPAW_WITHOUT_BLAS)
	printf "compiler = 'g++'\nmpi = False\nfftw = True\nlibraries += ['fftw3', 'blas']\n" > $(VENV)/gpaw-siteconfig.py
	GPAW_CONFIG=$(CURDIR)/$(VENV)/gpaw-siteconfig.py $(BIN)/pip install -q torch==2.13.0 -e ".[test,gpaw]"
	touch $(STAMP)

venv: $(STAMP)

# replay/pretraining set for fine-tuning SevenNet-0 (docs/MLIP_finetune.md): 1000 labelled MPtrj structures (MIT,
# Microsoft) that the mattersim sdist ships; only the sdist is fetched (its build backend from wheels, ~10 s)
MPTRJ := $(VENV)/share/mptrj/mptrj-random-1k.xyz
$(MPTRJ): | $(STAMP)
	mkdir -p $(@D)
	$(BIN)/pip download -q mattersim==1.2.3 --no-deps --no-binary mattersim -d $(@D)
	tar -xzf $(@D)/mattersim-1.2.3.tar.gz -C $(@D) --strip-components=3 mattersim-1.2.3/data/benchmarks/mptrj-random-1k.xyz
	tar -xzf $(@D)/mattersim-1.2.3.tar.gz -C $(@D) --strip-components=1 mattersim-1.2.3/LICENSE.txt
	rm $(@D)/mattersim-1.2.3.tar.gz

replay-data: $(MPTRJ)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	# outputs go to demo_out/ (file outputs need an existing folder: a missing one is refused as bad input)
	mkdir -p demo_out/mor
	# 1. reference data: 8 thermal water structures labelled with PySCF PBE/def2-SVP on 2 Dask workers
	$(BIN)/fastqmd generate examples/water_demo.yaml
	$(BIN)/fastqmd dataset info demo_out/water_demo.h5
	# 2. reference MD (tblite GFN2, pinned O, Berendsen 300 K) and its analysis
	$(BIN)/fastqmd md examples/md_water_tblite.yaml --overwrite
	$(BIN)/fastqmd analyze demo_out/md_water_tblite/trajectory.extxyz
	# 3. a second level of theory (GFN1) standing in for a surrogate, compared side by side
	$(BIN)/fastqmd md examples/md_water_gfn1.yaml --overwrite
	$(BIN)/fastqmd compare demo_out/md_water_tblite/trajectory.extxyz demo_out/md_water_gfn1/trajectory.extxyz -o demo_out/water_compare
	# 4. NNH: 120 thermal water structures labelled with tblite GFN2 (step 2's level of theory) -> train a small NN
	#    Hamiltonian (H alone, then forces; ~2 CPU min) -> evaluate -> NNH-MD at step 2's settings -> compare with
	#    step 2's reference MD; md exits 3 on a blow-up, the check exits 1 if bonds, angle or T are off
	$(BIN)/fastqmd generate benchmarks/nnh_train/demo_water_data.yaml
	$(BIN)/fastqmd train benchmarks/nnh_train/demo_water_train.yaml --overwrite
	$(BIN)/fastqmd evaluate demo_out/nnh_water_model/model.pt demo_out/nnh_water_gfn2.h5 -o demo_out/nnh_water_eval
	$(BIN)/fastqmd md benchmarks/nnh_train/demo_water_md.yaml --overwrite
	$(BIN)/fastqmd compare demo_out/md_water_tblite/trajectory.extxyz demo_out/md_water_nnh/trajectory.extxyz -o demo_out/water_nnh_compare
	$(BIN)/python benchmarks/nnh_train/demo_water_check.py demo_out/water_nnh_compare.json --eval demo_out/nnh_water_eval/evaluation.json
	# 5. MOR-QMD on a coarse grid (32³, h = 0.375 Bohr; ~2 min): Hi-Fi snapshots at 18 geometries around this grid's
	#    relaxed water -> reduced basis (rank ~35) -> 100 MD steps each with MOR and with the real-space Hi-Fi solver
	#    (pinned O, Berendsen 300 K, same start) -> compare; the same physical-agreement check as step 4
	$(BIN)/fastqmd mor snapshots examples/mor/md_demo32_snapshots.yaml --quiet
	$(BIN)/fastqmd mor basis demo_out/mor/md_demo32.h5 -o demo_out/mor/md_demo32_basis.h5 --overwrite
	$(BIN)/fastqmd md examples/mor/md_demo32_mor.yaml --overwrite
	$(BIN)/fastqmd md examples/mor/md_demo32_hifi.yaml --overwrite
	$(BIN)/fastqmd compare demo_out/md_demo32_hifi/trajectory.extxyz demo_out/md_demo32_mor/trajectory.extxyz -o demo_out/mor_demo32_compare
	$(BIN)/python benchmarks/nnh_train/demo_water_check.py demo_out/mor_demo32_compare.json
	# 6. BP MLIP on step 4's tblite water data (~1 min of training) -> evaluate -> MLIP-MD at step 2's settings ->
	#    compare with step 2's reference MD and check as in step 4
	$(BIN)/fastqmd train benchmarks/mlip_bp/demo_water_train.yaml --overwrite
	$(BIN)/fastqmd evaluate demo_out/bp_water_model/model.pt demo_out/nnh_water_gfn2.h5 -o demo_out/bp_water_eval
	$(BIN)/fastqmd md benchmarks/mlip_bp/demo_water_md.yaml --overwrite
	$(BIN)/fastqmd compare demo_out/md_water_tblite/trajectory.extxyz demo_out/md_water_bp/trajectory.extxyz -o demo_out/water_bp_compare
	$(BIN)/python benchmarks/nnh_train/demo_water_check.py demo_out/water_bp_compare.json --eval demo_out/bp_water_eval/evaluation.json

clean:
	rm -rf $(VENV) demo_out
