#!/usr/bin/env python3
"""meddiff's 3-D U-Net forward against MONAI's DiffusionModelUNet, and its VQ-GAN decoder against the
reference implementation's decoder blocks written in plain PyTorch; same torch, same machine, same run.

For each config, MONAI's network is built with the config's U-Net settings (channels per level,
residual blocks, attention levels and heads, class embedding, group norm, input channels including
the label condition) and timed at batch 1 under torch.no_grad, alternating with `meddiff bench
--parts unet --json` for the same config, ROUNDS times; the ratio MONAI / meddiff of the medians of
each round is printed, with the median over rounds.

The reference decode (Medical Diffusion's decode with quantisation: the nearest code of every latent
vector from the full distance matrix, then the decoder as REFERENCE.md describes it: a 1^3
post-quantisation convolution, per stage a ConvTranspose3d kernel 4 stride 2 and n_res_blocks + 1
residual blocks of GroupNorm, SiLU and replicate-padded 3^3 convolutions, then GroupNorm, SiLU and a 3^3
convolution) is built here with the config's vqgan settings and timed likewise against
`meddiff bench --parts vqgan`'s decode.

MONAI is installed from PyPI into a throwaway folder (pip --target, no dependencies: it needs only the
torch and numpy of the project's environment, and einops). When it cannot be had, the script says so and exits 0.

With --network FILE (a MONAI / MAISI network config such as configs/networks/maisi-rflow-ct.json, in the
format of NV-Generate-CTMR's config_network_rflow.json), the networks imported from MONAI are compared
instead: MONAI builds "diffusion_unet_def" and "autoencoder_def" from the file, meddiff builds the same
networks (`meddiff bench --network FILE`), both with random weights, and the U-Net forward and the
autoencoder's decode of a --network-latent latent are timed alternately.

Usage: scripts/bench-vs-monai.py [--meddiff BIN] [--config C ...] [--rounds 3] [--repeat 5] [--json OUT]
       scripts/bench-vs-monai.py --network FILE [--network-latent 16,16,16] [--rounds 3] [--repeat 3] [--json OUT]
Run it with the project's Python (.venv/bin/python) so both sides use the same torch."""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def monai_available(target):
    try:
        import monai  # noqa: F401
        return True
    except ImportError:
        pass
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, "monai", "einops"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"bench-vs-monai: skipped, MONAI could not be installed ({r.stderr.strip().splitlines()[-1:]})")
        return False
    sys.path.insert(0, target)
    return True


def groups_for(channels):
    # the largest group count in (32, 16, 8, 4, 2, 1) dividing every level's channels, as MONAI needs one value
    for g in (32, 16, 8, 4, 2, 1):
        if all(c % g == 0 for c in channels):
            return g
    return 1


def monai_unet(cfg, latent_channels):
    from monai.networks.nets import DiffusionModelUNet
    u = cfg["ldm"]["unet"]
    chans = tuple(u["base_channels"] * m for m in u["channel_mults"])
    levels = len(chans)
    attn = tuple(l in u["attention_levels"] for l in range(levels))
    labels = cfg["data"].get("labels", "none") == "condition"
    cond = max(2, len(cfg["data"].get("label_names", []))) if labels else 0
    net = DiffusionModelUNet(
        spatial_dims=3, in_channels=latent_channels + cond, out_channels=latent_channels,
        num_res_blocks=tuple([u["num_res_blocks"]] * levels), channels=chans, attention_levels=attn,
        norm_num_groups=groups_for(chans), num_head_channels=tuple(c // u["attention_heads"] for c in chans),
        num_class_embeds=3 if u.get("conditional", True) else None)
    return net, cond


def reference_decoder(cfg):
    import math
    import torch
    from torch import nn
    import torch.nn.functional as F

    def gn(c):
        g = min(32, max(1, c // 4))
        while c % g:
            g -= 1
        return nn.GroupNorm(g, c)

    class SamePad(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.conv = nn.Conv3d(i, o, 3)

        def forward(self, x):
            return self.conv(F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate"))

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.n1, self.c1, self.n2, self.c2 = gn(c), SamePad(c, c), gn(c), SamePad(c, c)

        def forward(self, x):
            h = self.c1(F.silu(self.n1(x)))
            return x + self.c2(F.silu(self.n2(h)))

    v = cfg["vqgan"]
    logs = [int(round(math.log2(d))) for d in v["downsample"][::-1]]  # config x,y,z -> tensor D,H,W
    n = max(logs)
    layers = []
    ch = v["n_hiddens"] << n
    layers.append(nn.Conv3d(v["embedding_dim"], ch, 1))
    for i in range(n - 1, -1, -1):
        s = [2 if i < l else 1 for l in logs]
        out = v["n_hiddens"] << i
        layers.append(nn.ConvTranspose3d(ch, out, [4 if k == 2 else 3 for k in s], stride=s, padding=1))
        layers += [Res(out) for _ in range(v.get("n_res_blocks", 1) + 1)]
        ch = out
    layers += [gn(ch), nn.SiLU(), SamePad(ch, 1)]
    blocks = nn.Sequential(*layers)

    class Decode(nn.Module):  # decode(z, quantize=True): nearest codes (full distance matrix), then the blocks
        def __init__(self):
            super().__init__()
            self.codebook = nn.Parameter(torch.randn(v["n_codes"], v["embedding_dim"]))
            self.blocks = blocks

        def forward(self, z):
            flat = z.movedim(1, -1).reshape(-1, z.shape[1])
            d = (flat ** 2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + (self.codebook ** 2).sum(1)
            q = self.codebook[d.argmin(1)].view(*z.movedim(1, -1).shape).movedim(-1, 1)
            return self.blocks(q)

    return Decode()


def time_monai(net, x, t, cls, repeat):
    import torch
    with torch.no_grad():
        net(x, t, class_labels=cls)  # warm-up
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            net(x, t, class_labels=cls)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def time_plain(net, x, repeat):
    import torch
    with torch.no_grad():
        net(x)
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            net(x)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def time_meddiff(binary, config, repeat, part="unet"):
    cmd = [binary, "bench", "--parts", part, "--sizes", "", "--repeat", str(repeat), "--json", "--device", "cpu"]
    if config:
        cmd += ["--config", config]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    c = json.loads(out)["configs"][0]
    return c["vqgan_decode" if part == "vqgan" else "unet_forward"]["median_s"], c


def time_meddiff_blocks(binary, config, repeat):
    _, c = time_meddiff(binary, config, repeat, "vqgan")
    return c["vqgan_decoder_blocks"]["median_s"]


def build_monai(defn, root):
    """The MONAI network a bundle-style definition describes ("_target_" + arguments, "@name" references)."""
    import importlib
    args = {}
    for k, v in defn.items():
        if k.startswith("_"):
            continue
        args[k] = root[v[1:]] if isinstance(v, str) and v.startswith("@") else v
    if "use_flash_attention" in args:
        args["use_flash_attention"] = False  # MONAI refuses flash attention without CUDA
    module, name = defn["_target_"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**args)


def network_mode(a):
    import torch
    root = json.load(open(a.network))
    sizes = [int(v) for v in a.network_latent.split(",")]
    name = os.path.basename(a.network)

    def ref(v):
        return root[v[1:]] if isinstance(v, str) and v.startswith("@") else v

    def compare(what, part, params_key, net, fn, x):
        """Alternate `meddiff bench --network` (its `part`) with fn(x) on MONAI's net; print and return the rounds."""
        rounds = []
        for _ in range(a.rounds):
            cmd = [a.meddiff, "bench", "--network", a.network, "--network-latent", a.network_latent, "--repeat", str(a.repeat),
                   "--json", "--device", "cpu"]
            info = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["networks"][0]
            m = info[part]["median_s"]
            o = time_plain(fn, x, a.repeat)
            rounds.append({"meddiff_s": m, "monai_s": o, "ratio": o / m})
        ratio = statistics.median(r["ratio"] for r in rounds)
        params = sum(p.numel() for p in net.parameters())
        print(f"{name}: {what}, latent {x.shape[1]}x{'x'.join(map(str, sizes))}; parameters meddiff "
              f"{info[params_key] / 1e6:.2f} M, MONAI {params / 1e6:.2f} M")
        for i, r in enumerate(rounds):
            print(f"  round {i + 1}: meddiff {r['meddiff_s'] * 1e3:.0f} ms, MONAI {r['monai_s'] * 1e3:.0f} ms, ratio {r['ratio']:.2f}")
        print(f"  {what}, batch 1: MONAI / meddiff = {ratio:.2f} (median of {a.rounds} rounds)")
        return {"rounds": rounds, "ratio": ratio, "monai_parameters": params}

    results = {"network": name, "latent_spatial": sizes}
    torch.manual_seed(0)
    with torch.no_grad():
        if "diffusion_unet_def" in root:
            c = root["diffusion_unet_def"]
            unet = build_monai(c, root).eval()
            kw = {"timesteps": torch.full((1,), 500.0)}
            if c.get("num_class_embeds"):
                kw["class_labels"] = torch.ones(1, dtype=torch.long)
            if c.get("include_spacing_input"):
                kw["spacing_tensor"] = torch.full((1, 3), 150.0)
            x = torch.randn(1, ref(c["in_channels"]), *sizes)
            results["unet"] = compare("U-Net forward", "unet_forward", "unet_parameters", unet, lambda v: unet(v, **kw), x)
        if "controlnet_def" in root:
            # one sampling step of MAISI's ControlNet as NV-Generate-CTMR runs it: MONAI's ControlNetMaisi embeds the
            # label map's bit planes at every call; meddiff embeds them once per volume and times the residuals alone
            c = root["controlnet_def"]
            cn = build_monai(dict(c, use_checkpointing=False), root).eval()
            f = 2 ** (len(c["conditioning_embedding_num_channels"]) - 1)
            cond = (torch.randint(0, 256, [1, 1] + [s * f for s in sizes]).unsqueeze(-1)
                    .bitwise_and(2 ** torch.arange(8)).ne(0).float().squeeze(1).permute(0, 4, 1, 2, 3))
            kw_cn = {"timesteps": torch.full((1,), 500.0), "controlnet_cond": cond}
            if c.get("num_class_embeds"):
                kw_cn["class_labels"] = torch.ones(1, dtype=torch.long)
            x = torch.randn(1, ref(c["in_channels"]), *sizes)
            results["controlnet"] = compare("ControlNet per step", "controlnet_residuals", "controlnet_parameters", cn,
                                            lambda v: cn(v, **kw_cn), x)
        if "autoencoder_def" in root:
            ae = build_monai(root["autoencoder_def"], root).eval()
            z = torch.randn(1, ref(root["autoencoder_def"]["latent_channels"]), *sizes)
            results["decode"] = compare("autoencoder decode", "autoencoder_decode", "autoencoder_parameters", ae, ae.decode, z)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meddiff", default=os.path.join(ROOT, "build/apps/meddiff/meddiff"))
    ap.add_argument("--config", action="append", help="config files (default: the built-in demo and configs/brats-flair-64.json)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--network", help="a MONAI / MAISI network config: compare the imported networks (see above)")
    ap.add_argument("--network-latent", default="16,16,16")
    a = ap.parse_args()
    import torch
    tmp = tempfile.mkdtemp(prefix="meddiff-monai-")
    if not monai_available(tmp):
        return 0
    import monai
    if a.network:
        print(f"torch {torch.__version__}, MONAI {monai.__version__}, {torch.get_num_threads()} threads")
        r = network_mode(a)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"torch": torch.__version__, "monai": monai.__version__, "threads": torch.get_num_threads(),
                           "network": r}, f, indent=2)
        return 0
    configs = a.config or ["", os.path.join(ROOT, "configs/brats-flair-64.json")]
    results = []
    print(f"torch {torch.__version__}, MONAI {monai.__version__}, {torch.get_num_threads()} threads")
    for config in configs:
        _, info = time_meddiff(a.meddiff, config, 1)
        if config:
            cfg = json.load(open(config))
        else:  # the built-in demo config, as `meddiff demo --print-config` gives it
            cfg = json.loads(subprocess.run([a.meddiff, "demo", "--print-config"], capture_output=True, text=True, check=True).stdout)
        E, d, h, w = info["latent_shape"]
        torch.manual_seed(0)
        net, cond = monai_unet(cfg, E)
        net.eval()
        x = torch.randn(1, E + cond, d, h, w)
        t = torch.full((1,), 150, dtype=torch.long)
        cls = torch.zeros(1, dtype=torch.long)
        monai_params = sum(p.numel() for p in net.parameters())
        rounds = []
        for _ in range(a.rounds):
            m, _ = time_meddiff(a.meddiff, config, a.repeat)
            o = time_monai(net, x, t, cls, a.repeat)
            rounds.append({"meddiff_s": m, "monai_s": o, "ratio": o / m})
        ratio = statistics.median(r["ratio"] for r in rounds)
        name = os.path.basename(config) or "demo-mr (built-in)"
        print(f"{name}: latent {E}x{d}x{h}x{w}; U-Net parameters meddiff {info['unet_parameters'] / 1e6:.2f} M, "
              f"MONAI {monai_params / 1e6:.2f} M")
        for i, r in enumerate(rounds):
            print(f"  round {i + 1}: meddiff {r['meddiff_s'] * 1e3:.1f} ms, MONAI {r['monai_s'] * 1e3:.1f} ms, ratio {r['ratio']:.2f}")
        print(f"  U-Net forward, batch 1: MONAI / meddiff = {ratio:.2f} (median of {a.rounds} rounds)")
        # the VQ-GAN decoder against the reference blocks
        dec = reference_decoder(cfg).eval()
        z = torch.randn(1, cfg["vqgan"]["embedding_dim"], d, h, w)
        dec_rounds = []
        for _ in range(a.rounds):
            m, _ = time_meddiff(a.meddiff, config, a.repeat, "vqgan")
            o = time_plain(dec, z, a.repeat)
            dec_rounds.append({"meddiff_s": m, "reference_s": o, "ratio": o / m})
        dec_ratio = statistics.median(r["ratio"] for r in dec_rounds)
        mb = time_meddiff_blocks(a.meddiff, config, a.repeat)
        rb = time_plain(dec.blocks, torch.randn(1, cfg["vqgan"]["embedding_dim"], d, h, w), a.repeat)
        print(f"  decoder blocks alone (no code search): meddiff {mb * 1e3:.1f} ms, reference {rb * 1e3:.1f} ms, ratio {rb / mb:.2f}")
        for i, r in enumerate(dec_rounds):
            print(f"  decode round {i + 1}: meddiff {r['meddiff_s'] * 1e3:.1f} ms, reference blocks {r['reference_s'] * 1e3:.1f} ms, "
                  f"ratio {r['ratio']:.2f}")
        print(f"  VQ-GAN decode of one volume: reference / meddiff = {dec_ratio:.2f} (median of {a.rounds} rounds)")
        results.append({"config": name, "latent_shape": info["latent_shape"], "meddiff_parameters": info["unet_parameters"],
                        "monai_parameters": monai_params, "rounds": rounds, "ratio": ratio,
                        "decode_rounds": dec_rounds, "decode_ratio": dec_ratio,
                        "decoder_blocks": {"meddiff_s": mb, "reference_s": rb, "ratio": rb / mb}})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "monai": monai.__version__, "threads": torch.get_num_threads(),
                       "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
