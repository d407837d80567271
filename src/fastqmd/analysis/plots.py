"""Figures in the studies' style: reference solid red, surrogates dashed black (then dotted/dash-dot grey),
one panel per quantity: T(t), MSD(t), g(r), ADF, VDOS, electronic DOS, bond lengths and angles vs time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLES = [dict(color="red", ls="-", lw=1.6), dict(color="black", ls="--", lw=1.4),
          dict(color="0.4", ls=":", lw=1.4), dict(color="0.55", ls="-.", lw=1.4)]

PANELS = [  # key of x, key of y, x label, y label, title
    ("time_fs", "T_K", "time (fs)", "T (K)", "temperature"),
    ("time_fs", "msd_A2", "time (fs)", "MSD (Å$^2$)", "mean-squared displacement"),
    ("rdf_r_A", "rdf_g", "r (Å)", "g(r)", "radial distribution"),
    ("adf_theta_deg", "adf_p", "angle (deg)", "P(θ) (1/deg)", "bond-angle distribution"),
    ("vdos_nu_THz", "vdos", "frequency (THz)", "VDOS (1/THz)", "vibrational DOS"),
    ("dos_E_eV", "dos", "E (eV)", "DOS (1/eV)", "electronic DOS"),
    ("time_fs", "bond_lengths_A", "time (fs)", "bond length (Å)", "bond lengths"),
    ("time_fs", "bond_angles_deg", "time (fs)", "angle (deg)", "bond angles"),
]


def plot_analyses(analyses: list[dict], labels: list[str], path: str | Path) -> Path:
    """One PNG with a panel for every quantity the first analysis has; analyses[0] is the reference."""
    panels = [p for p in PANELS if p[1] in analyses[0] and np.size(analyses[0][p[1]])]
    ncol = min(3, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), squeeze=False)
    for ax, (xk, yk, xl, yl, title) in zip(axes.flat, panels):
        for a, label, st in zip(analyses, labels, STYLES * 4):
            if yk not in a or xk not in a:
                continue
            y = np.asarray(a[yk])
            if y.ndim == 2:  # several bonds/angles: one line each, label once
                for c in range(y.shape[1]):
                    ax.plot(a[xk], y[:, c], label=label if c == 0 else None, **st)
            else:
                ax.plot(a[xk], y, label=label, **st)
        ax.set(xlabel=xl, ylabel=yl, title=title)
        if xk == "vdos_nu_THz":
            ax.set_xlim(0, float(np.asarray(analyses[0][xk])[-1]) / 2 or None)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
