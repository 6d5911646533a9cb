"""VQ-GAN tokenizer training (TECO.md section 2).

    min_{E,G,C} max_D  L_rec + w_lpips L_LPIPS + L_VQ + lambda * w_gan L_GAN

One loss, one backward pass: the generator sees a stop-gradient copy of the
discriminator, the discriminator sees a stop-gradient reconstruction, so each set of
parameters gets the gradient of its own objective. lambda is the adaptive weight
||grad_W L_rec|| / ||grad_W L_GAN|| at the decoder's last layer W. The GAN terms are
switched on at `loss.disc_start`.

Dimension keys: B frames in the batch, H/W pixels, h/w latent grid.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teco_jax import config_base, losses, parallel
from teco_jax import metrics as image_metrics
from teco_jax import logging as tlog
from teco_jax.models.discriminator import PatchDiscriminator
from teco_jax.models.lpips import LPIPS
from teco_jax.models.vqgan import VQGAN
from teco_jax.nn.util import count_params
from teco_jax.tasks import base


class VQGANWithDiscriminator(nnx.Module):
    """Everything the VQ-GAN task trains: the tokenizer and its patch discriminator."""

    def __init__(self, model_cfg, *, rngs: nnx.Rngs, dtype=None):
        self.vqgan = VQGAN(model_cfg, rngs=rngs, dtype=dtype)
        self.disc = PatchDiscriminator(3, model_cfg.disc_channels, model_cfg.disc_layers, rngs=rngs, dtype=dtype)


cached_lpips = functools.lru_cache(maxsize=None)(LPIPS)  # one instance per net: a stable jit static arg


def to_float(frames_uint8: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return frames_uint8.astype(jnp.float32) / 127.5 - 1.0


def _conv_nhwc(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(x.dtype)


@base.register
class VQGANTask(base.Task):
    name = "vqgan"
    batch_keys = ("frames",)

    def build_model(self, rngs: nnx.Rngs) -> VQGANWithDiscriminator:
        return VQGANWithDiscriminator(self.config.model, rngs=rngs, dtype=config_base.compute_dtype(self.config))

    def prepare_batch(self, batch):
        video = batch["video"]  # (B, T, H, W, 3) clips -> B*T frames
        return {"frames": video.reshape((-1,) + video.shape[2:])}

    def constants(self) -> Any:
        return cached_lpips(self.config.loss.lpips_net).params if self.config.loss.lpips_weight > 0 else None

    def loss(self, model, batch, key, step, constants):
        cfg = self.config.loss
        x = to_float(batch["frames"])
        enc = model.vqgan.encode(x)
        feats = model.vqgan.decoder.features(enc["z_q"])
        last = model.vqgan.decoder.conv_out
        kernel, bias = last.kernel[...], last.bias[...]
        decode_last = functools.partial(_conv_nhwc, feats, bias=bias)
        x_rec = decode_last(kernel).astype(jnp.float32)
        lpips = cached_lpips(cfg.lpips_net) if cfg.lpips_weight > 0 else None

        def rec_loss(x_hat):
            rec = losses.l1(x, x_hat) if cfg.recon == "l1" else losses.l2(x, x_hat)
            lp = jnp.mean(lpips(x, x_hat, constants)) if lpips is not None else jnp.zeros(())
            return cfg.recon_weight * rec + cfg.lpips_weight * lp, (rec, lp)

        rec_total, (rec, lp) = rec_loss(x_rec)
        disc_graph, disc_state = nnx.split(model.disc)
        frozen_disc = nnx.merge(disc_graph, jax.lax.stop_gradient(disc_state))

        def gan_terms(_):
            lam = losses.adaptive_gan_weight(
                lambda w: rec_loss(decode_last(w).astype(jnp.float32))[0],
                lambda w: losses.hinge_g_loss(frozen_disc(decode_last(w).astype(jnp.float32))),
                kernel)
            g_loss = losses.hinge_g_loss(frozen_disc(x_rec))
            d_loss = losses.hinge_d_loss(model.disc(x), model.disc(jax.lax.stop_gradient(x_rec)))
            return cfg.gan_weight * lam * g_loss + d_loss, (lam, g_loss, d_loss)

        def no_gan(_):
            zero = jnp.zeros((), jnp.float32)
            return zero, (zero, zero, zero)

        gan_total, (lam, g_loss, d_loss) = jax.lax.cond(step >= cfg.disc_start, gan_terms, no_gan, None)
        total = rec_total + enc["loss"] + gan_total
        metrics = {"rec": rec, "lpips": lp, "vq": enc["loss"], "perplexity": enc["perplexity"],
                   "usage": enc["usage"], "g_loss": g_loss, "d_loss": d_loss, "gan_lambda": lam,
                   "psnr": jnp.mean(image_metrics.psnr((x + 1) / 2, jnp.clip(x_rec + 1, 0, 2) / 2))}
        return total, metrics

    # ---------------------------------------------------------------- pictures
    def visualize(self, model, batch, constants) -> np.ndarray:
        frames = parallel.to_host(batch["frames"])[:8]
        rec = parallel.to_host(_reconstruct(model.vqgan, frames))
        return tlog.image_grid([frames, tlog.to_uint8(rec)])

    # --------------------------------------------------------------- evaluation
    def evaluate(self, model, batches: Iterator[dict[str, np.ndarray]], constants) -> dict[str, float]:
        """Test-set PSNR, SSIM, LPIPS (AlexNet; and VGG16) of reconstructions, of bicubic up-sampling from
        the latent resolution as a reference, and codebook usage over all test codes."""
        lp, lp_vgg = cached_lpips("alexnet"), cached_lpips("vgg16")
        sums: dict[str, list[np.ndarray]] = {}
        counts = np.zeros(self.config.model.codebook_size, np.int64)
        for batch in batches:
            frames = jnp.asarray(self.prepare_batch(batch)["frames"])
            out = _eval_batch(model.vqgan, frames, lp.params, lp, lp_vgg.params, lp_vgg)
            for k, v in out.items():
                if k != "codes":
                    sums.setdefault(k, []).append(parallel.to_host(v))
            counts += np.bincount(parallel.to_host(out["codes"]).ravel(), minlength=len(counts))
        if not sums:
            return {}
        result = {k: float(np.mean(np.concatenate(v))) for k, v in sums.items()}
        p = counts / max(counts.sum(), 1)
        result["perplexity"] = float(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))))
        result["codebook_usage"] = float(np.mean(counts > 0))
        return result

    def describe(self, model) -> dict[str, int]:
        v = model.vqgan
        parts = {"encoder": v.encoder, "codebook": v.codebook, "decoder": v.decoder, "discriminator": model.disc}
        counts = {k: count_params(m) for k, m in parts.items()}
        counts["total (excluding discriminator)"] = sum(counts[k] for k in ("encoder", "codebook", "decoder"))
        counts["total"] = count_params(model)
        return counts


@nnx.jit
def _reconstruct(vqgan: VQGAN, frames: jax.Array) -> jax.Array:
    return vqgan(to_float(frames))[0]


@nnx.jit(static_argnums=(3, 5))
def _eval_batch(vqgan: VQGAN, frames: jax.Array, lpips_params: Any, lpips: LPIPS, vgg_params: Any,
                vgg: LPIPS) -> Mapping[str, jax.Array]:
    x = to_float(frames)
    rec, aux = vqgan(x)
    rec = jnp.clip(rec, -1, 1)
    h, w = vqgan.latent_shape
    small = jax.image.resize(x, (x.shape[0], h, w, 3), "linear", antialias=True)
    bicubic = jnp.clip(jax.image.resize(small, x.shape, "bicubic"), -1, 1)
    unit = lambda a: (a + 1) / 2  # noqa: E731
    return {"psnr": image_metrics.psnr(unit(x), unit(rec)), "ssim": image_metrics.ssim(unit(x), unit(rec)),
            "lpips": lpips(x, rec, lpips_params), "lpips_vgg": vgg(x, rec, vgg_params),
            "bicubic_psnr": image_metrics.psnr(unit(x), unit(bicubic)),
            "bicubic_ssim": image_metrics.ssim(unit(x), unit(bicubic)),
            "bicubic_lpips": lpips(x, bicubic, lpips_params), "bicubic_lpips_vgg": vgg(x, bicubic, vgg_params),
            "codes": aux["codes"]}
