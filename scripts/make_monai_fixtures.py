#!/usr/bin/env python3
"""Writes tests/fixtures/monai/: small networks built by MONAI itself with random weights, saved in the
file formats users download, with inputs and MONAI's outputs, for meddiff's equality tests (issue 25):

  autoencoder_kl.pt        MONAI AutoencoderKL state dict (as a MONAI bundle's model_autoencoder.pt)
  autoencoder_kl_io.pt     {"input", "mu", "sigma", "decoded"}: encode(input) and decode(mu)
  autoencoder_maisi.pt     MAISI AutoencoderKlMaisi state dict (as NV-Generate-CTMR's autoencoder_v1.pt)
  autoencoder_maisi_io.pt  the same outputs for it
  networks.json            the settings each network was built with
  torch_save_types.pt      a MAISI-style U-Net file ({"unet_state_dict": OrderedDict with _metadata, "scale_factor": tensor,
                           ...}) with every kind of value torch.save writes in such files (fp16 / int64 / bool tensors,
                           a strided view, a parameter, numbers, strings, None, lists, tuples, sets, a numpy scalar)
  torch_save_legacy.pt     a state dict in the pre-1.6 format (meddiff refuses it with a clear message)

The networks have the structure of the released configs (MONAI's BraTS bundle: attention at the deepest
level and in the middle; MAISI: no attention, trilinear upsampling, GroupNorm eps 1e-6) with fewer
channels, so the files stay small. Inputs are not cubes, so that an axis mix-up shows.

MONAI is installed from PyPI into a throwaway folder (pip --target, no dependencies). Run it with the
project's Python so that torch is the project's:  .venv/bin/python scripts/make_monai_fixtures.py
"""
import json, os, pathlib, subprocess, sys, tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "monai"


def import_monai():
    try:
        import monai  # noqa: F401
        return
    except ImportError:
        pass
    target = pathlib.Path(tempfile.gettempdir()) / "meddiff-monai-pkg"
    if not (target / "monai").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        "monai==1.6.1", "einops"], check=True)
    sys.path.insert(0, str(target))


def write_torch_save_types():
    import collections
    import numpy as np
    import torch
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 8
    sd["conv.bias"] = torch.tensor([1.5, -2.25], dtype=torch.float16)
    base = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    sd["view.t"] = base.t()  # a strided view of the storage of "base"
    sd["base"] = base
    sd["mask"] = torch.tensor([True, False, True])
    sd["param"] = torch.nn.Parameter(torch.full((2, 2), 0.5, dtype=torch.bfloat16))
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("conv", {"version": 2})])
    obj = {"epoch": 7, "loss": 0.125, "num_train_timesteps": 1000, "big": 2 ** 40, "negative": -3, "scale_factor": torch.tensor(1.0549),
           "unet_state_dict": sd, "name": "rflow-ct", "flag": True, "nothing": None, "steps": [1, 2.5, "x"],
           "shape": (4, 64, 64), "codes": {1, 9}, "numpy": np.float64(0.5)}
    torch.save(obj, OUT / "torch_save_types.pt")
    torch.save(collections.OrderedDict(w=torch.ones(2)), OUT / "torch_save_legacy.pt", _use_new_zipfile_serialization=False)


def main():
    import_monai()
    import torch
    import monai
    from monai.networks.nets import AutoencoderKL
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

    torch.manual_seed(20261204)
    OUT.mkdir(parents=True, exist_ok=True)
    settings = {"monai": monai.__version__, "torch": torch.__version__}

    def randomise(net):
        # MONAI initialises GroupNorm to (1, 0) and some layers to zero: random values everywhere test every term.
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn_like(p) * (0.2 if p.dim() > 1 else 0.5))
        return net.eval()

    def record(name, net, x):
        with torch.no_grad():
            mu, sigma = net.encode(x)
            decoded = net.decode(mu)
        torch.save(net.state_dict(), OUT / f"{name}.pt")
        torch.save({"input": x, "mu": mu, "sigma": sigma, "decoded": decoded}, OUT / f"{name}_io.pt")
        print(f"{name}: input {tuple(x.shape)} latent {tuple(mu.shape)} decoded {tuple(decoded.shape)} "
              f"range {decoded.min():.3f}..{decoded.max():.3f}")

    kl = dict(spatial_dims=3, in_channels=1, out_channels=1, channels=[4, 8, 8], num_res_blocks=[1, 2, 1],
              attention_levels=[False, False, True], latent_channels=3, norm_num_groups=2, norm_eps=1e-6,
              with_encoder_nonlocal_attn=True, with_decoder_nonlocal_attn=True)
    record("autoencoder_kl", randomise(AutoencoderKL(**kl)), torch.randn(1, 1, 16, 12, 8))
    settings["autoencoder_kl"] = kl

    maisi = dict(spatial_dims=3, in_channels=1, out_channels=1, latent_channels=4, num_channels=[4, 8, 8],
                 num_res_blocks=[2, 2, 2], norm_num_groups=2, norm_eps=1e-6,
                 attention_levels=[False, False, False], with_encoder_nonlocal_attn=False,
                 with_decoder_nonlocal_attn=False, use_checkpointing=False, use_convtranspose=False,
                 norm_float16=False, num_splits=1, dim_split=1)
    record("autoencoder_maisi", randomise(AutoencoderKlMaisi(**maisi)), torch.randn(1, 1, 8, 16, 12))
    settings["autoencoder_maisi"] = maisi

    write_torch_save_types()
    (OUT / "networks.json").write_text(json.dumps(settings, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
