#!/usr/bin/env python3
"""Writes tests/fixtures/diffusion_reference.json with values from a published implementation,
Hugging Face diffusers (DDPMScheduler, DDIMScheduler), for meddiff's schedule and sampler tests:

    .venv/bin/python -m pip install diffusers   # once
    .venv/bin/python scripts/make_diffusion_reference.py

Recorded: alphas_cumprod of the linear, cosine ("squaredcos_cap_v2") and scaled_linear schedules for
T = 300 and 1000; one DDPM step (posterior mean + sigma * fixed noise) and one DDIM step (eta 0 and
eta 0.5 with fixed noise) on fixed inputs, with x0 clipping off.
"""
import json
import pathlib

import torch
import diffusers
from diffusers import DDIMScheduler, DDPMScheduler
import diffusers.schedulers.scheduling_ddim as ddim_mod
import diffusers.schedulers.scheduling_ddpm as ddpm_mod

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "diffusion_reference.json"
torch.set_default_dtype(torch.float64)

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "scaled_linear": "scaled_linear"}


def betas_for(kind, T):
    if kind == "linear":  # diffusers' default range is for T = 1000; meddiff scales it by 1000 / T (as Ho et al.)
        return dict(beta_schedule="linear", beta_start=1e-4 * 1000 / T, beta_end=0.02 * 1000 / T)
    if kind == "scaled_linear":
        return dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    return dict(beta_schedule="squaredcos_cap_v2")


def in_double(s):
    # diffusers keeps its schedule in float32; recompute the products in float64 so that the reference
    # steps are exact to ~1e-9 (float32 would leave ~1e-5 in 1 - alpha_bar_t / alpha_bar_prev).
    s.betas = s.betas.double()
    s.alphas = 1.0 - s.betas
    s.alphas_cumprod = torch.cumprod(s.alphas, 0)
    return s


def fixed(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def main():
    rec = {"diffusers_version": diffusers.__version__, "schedules": {}, "ddpm_steps": [], "ddim_steps": []}
    for kind in SCHEDULES:
        for T in (300, 1000):
            s = DDPMScheduler(num_train_timesteps=T, **betas_for(kind, T))
            rec["schedules"][f"{kind}_{T}"] = s.alphas_cumprod.double().tolist()

    shape = (1, 2, 3)
    x_t, eps, noise = fixed(shape, 1), fixed(shape, 2), fixed(shape, 3)
    # Replace the schedulers' random draws by a fixed tensor, so that the stochastic part is known.
    ddpm_mod.randn_tensor = lambda *a, **k: noise.clone()
    ddim_mod.randn_tensor = lambda *a, **k: noise.clone()
    for kind in SCHEDULES:
        T = 300
        s = in_double(DDPMScheduler(num_train_timesteps=T, clip_sample=False, variance_type="fixed_small", **betas_for(kind, T)))
        s.set_timesteps(T)
        for t in (250, 100, 1):
            out = s.step(eps.clone(), t, x_t.clone()).prev_sample
            rec["ddpm_steps"].append({"schedule": kind, "T": T, "t": t, "x_t": x_t.tolist(), "eps": eps.tolist(),
                                      "noise": noise.tolist(), "prev": out.tolist()})
        d = in_double(DDIMScheduler(num_train_timesteps=T, clip_sample=False, set_alpha_to_one=True, **betas_for(kind, T)))
        d.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
        d.set_timesteps(30)
        for t in (d.timesteps[3].item(), d.timesteps[-1].item()):
            prev_t = t - T // 30
            for eta in (0.0, 0.5):
                out = d.step(eps.clone(), t, x_t.clone(), eta=eta).prev_sample
                rec["ddim_steps"].append({"schedule": kind, "T": T, "t": t, "prev_t": prev_t, "eta": eta,
                                          "x_t": x_t.tolist(), "eps": eps.tolist(), "noise": noise.tolist(),
                                          "prev": out.tolist()})
    OUT.write_text(json.dumps(rec) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) with diffusers {diffusers.__version__}")


if __name__ == "__main__":
    main()
