"""Draw the data-flow diagram of docs/architecture.md into docs/architecture.png.

    python docs/make_architecture_diagram.py [--out docs/architecture.png]

Only matplotlib is needed (Agg backend, no display).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

COLORS = {
    "data": "#e8e8e8",     # arrays on disk or in memory
    "vqgan": "#cfe2f3",    # the frozen VQ-GAN
    "teco": "#d9ead3",     # TECO's trainable parts
    "prior": "#fce5cd",    # the MaskGIT prior
    "action": "#ead1dc",   # actions
}


def box(ax, x, y, w, h, text, kind, fontsize=8.5, weight="normal"):
    """A rounded box centred at (x, y) of size (w, h) with centred text; returns its edges."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.4,rounding_size=1.2",
                                fc=COLORS[kind], ec="#444444", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight=weight, linespacing=1.35)
    return {"l": (x - w / 2 - 0.5, y), "r": (x + w / 2 + 0.5, y), "t": (x, y + h / 2 + 0.5),
            "b": (x, y - h / 2 - 0.5)}


def arrow(ax, start, end, label=None, dashed=False, rad=0.0, label_xy=None, color="#333333"):
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "-|>", "lw": 1.3, "color": color, "shrinkA": 0, "shrinkB": 0,
                            "linestyle": "--" if dashed else "-", "connectionstyle": f"arc3,rad={rad}"})
    if label:
        lx, ly = label_xy if label_xy else ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 1.4)
        ax.text(lx, ly, label, ha="center", va="center", fontsize=7.5, color=color, style="italic",
                bbox={"fc": "white", "ec": "none", "pad": 0.6})


def lane(ax, y, text):
    ax.text(0.5, y, text, ha="left", va="center", fontsize=9, weight="bold", color="#555555", rotation=90)


def draw(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(13, 7.6))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 72)
    ax.axis("off")
    ax.set_title("TECO in teco_jax: data flow (B batch, T frames, E VQ-GAN latent dim, D TECO embedding dim, "
                 "K VQ-GAN codebook size)", fontsize=10.5)

    # ---- lane 1: tokenizer (trained first, then frozen)
    lane(ax, 62, "tokenizer")
    frames = box(ax, 11, 62, 15, 7, "frames x\nB×T×64×64×3 uint8\n(data/, pipeline.py)", "data")
    enc = box(ax, 33, 62, 16, 7, "VQ-GAN encoder\n+ l2 codebook\nmodels/vqgan.py", "vqgan")
    codes = box(ax, 56, 62, 18, 7, "VQ-GAN codes c\nB×T×16×16 int (K = 1024)\nencode.py: code dataset", "data")
    emb = box(ax, 81, 62, 17, 7, "code embeddings e\nB×T×16×16×E\n(frozen lookup table)", "vqgan")
    arrow(ax, frames["r"], enc["l"])
    arrow(ax, enc["r"], codes["l"])
    arrow(ax, codes["r"], emb["l"])

    # ---- lane 2: TECO's posterior and temporal model
    lane(ax, 38, "TECO (models/teco.py)")
    cenc = box(ax, 12, 38, 17, 8, "cond. encoder\nE(e_t, e_{t-1})\nResNet 16×16 → 8×8", "teco")
    cbook = box(ax, 34, 38, 17, 8, "TECO codebook\nz  B×T×8×8×D\n(z_0 continuous)   L_VQ", "teco")
    temp = box(ax, 61, 38, 24, 10, "temporal transformer\ninput z_{t-1} ⊕ a_t, strided conv z_ds\n"
               "(8×8 → 1 token / frame), block-causal\nmask, transposed conv back to 8×8", "teco")
    h = box(ax, 88, 38, 13, 7, "h\nB×T×8×8×D\n(sees z_<t, a_≤t)", "teco")
    act = box(ax, 61, 50.5, 24, 4, "actions a  B×T  (index 6 = null action)", "action", fontsize=8)
    # e goes down, left above the actions box, and down into the encoder
    ax.plot([emb["b"][0], emb["b"][0], cenc["t"][0]], [emb["b"][1], 55.5, 55.5], color="#333333", lw=1.3)
    arrow(ax, (cenc["t"][0], 55.5), cenc["t"], label="e_t, e_{t-1}", label_xy=(20, 55.5))
    arrow(ax, cenc["r"], cbook["l"])
    arrow(ax, cbook["r"], temp["l"], label="z")
    arrow(ax, act["b"], temp["t"])
    arrow(ax, temp["r"], h["l"])

    # ---- lane 3: per-frame prior and decoder
    lane(ax, 13, "per frame")
    prior = box(ax, 61, 13, 22, 9, "MaskGIT prior p(z_t | h_t)\nbidirectional, 64 tokens\n"
                "draft-and-revise sampling\nmodels/maskgit.py   L_prior", "prior")
    dec = box(ax, 88, 13, 14, 9, "decoder\nD(z_t, h_t)\n8×8 → 16×16\nL_recon (CE)", "teco")
    logits = box(ax, 34, 13, 18, 7, "logits B×T×16×16×K\nargmax → codes", "data")
    out_frames = box(ax, 11, 13, 16, 7, "VQ-GAN decoder\n→ frames\nB×T×64×64×3", "vqgan")
    arrow(ax, h["b"], dec["t"])
    arrow(ax, (h["b"][0] - 4, h["b"][1]), (prior["t"][0] + 6, prior["t"][1]), label="h_t",
          label_xy=(77.5, 27))
    arrow(ax, prior["r"], dec["l"], label="z_t", label_xy=(79.5, 15.2))
    arrow(ax, cbook["b"], (prior["l"][0], prior["l"][1] + 1), dashed=True, rad=0.25,
          label="posterior z_t (training:\nD input, prior target)", label_xy=(35, 24.5))
    arrow(ax, dec["b"], (logits["b"][0], logits["b"][1]), rad=-0.12)
    ax.text(61, 3.2, "logits", fontsize=7.5, style="italic", ha="center", color="#333333")
    arrow(ax, logits["l"], out_frames["r"])
    arrow(ax, (prior["t"][0] - 6, prior["t"][1]), (temp["b"][0] - 6, temp["b"][1]), dashed=True,
          color="#b45f06", label="rollout: sampled z_t\nfed back (rollout.py)",
          label_xy=(64, 25.5))

    # ---- legend of the losses
    ax.text(99.5, 71, "training: L = L_VQ + L_recon + L_prior;  DropLoss: D and MaskGIT on 10% of the frames "
            "(tasks/teco.py)", ha="right", va="top", fontsize=8, color="#444444")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("architecture.png"))
    args = p.parse_args()
    draw(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
