"""The fastqmd dataset schema (HDF5, one file), version 1.

Root attributes
    format = "fastqmd-dataset", schema_version = 1, engine (str), settings (JSON: the level of theory),
    basis (JSON: element -> shell angular momenta), valence_electrons (JSON: element -> electrons of the
    neutral atom that H describes, so N_e of any neutral structure is the sum over its atoms), fastqmd_version.
/samples/<index:08d>  one group per requested structure; <index> is its position in the generation config's
    structure list, so a sample can never be stored twice. Attributes:
        status ("ok" | "failed"), error (str, failed only), source (str), wall_time_s, versions (JSON),
        energy (eV), n_electrons, fermi_level (eV, NaN if none), electronic_temperature_K,
        min_distance_A, extras (JSON)
    Datasets (ASE units; failed samples carry only the structure):
        numbers [N] int32, positions [N, 3] Å, cell [3, 3] Å (rows), pbc [3] bool,
        forces [N, 3] eV/Å (absent when the engine gives none),
        orbital_offsets [N + 1] (atom a owns orbitals offsets[a]:offsets[a+1]),
        kpoints [nk, 3] fractional, kweights [nk],
        H [nk, nao, nao] eV, S [nk, nao, nao]  (float64 at Γ-only, complex128 with k-points;
            chunked in orbital tiles so one atom-pair block is read without loading the matrix),
        eigenvalues [nk, nmo] eV, occupations [nk, nmo] (electrons per orbital, spin included).
Periodic images: H(k) = Σ_R e^{i2πk·R} H(0, R) — the stored matrices are these lattice sums at the stored
k-points (Γ-only supercells: the k = 0 sum over images), which is exactly what the engines diagonalize.
"""

SCHEMA_VERSION = 1
FORMAT_NAME = "fastqmd-dataset"
SAMPLES = "samples"
TILE = 64  # orbital tile edge of the H/S chunks


def sample_key(index: int) -> str:
    """Group name of the sample with generation index `index`."""
    return f"{index:08d}"
