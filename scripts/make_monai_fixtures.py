#!/usr/bin/env python3
"""Writes tests/fixtures/monai/: small networks built by MONAI itself with random weights, saved in the
file formats users download, with inputs and MONAI's outputs, for meddiff's equality tests (issue 25):

  autoencoder_kl.pt        MONAI AutoencoderKL state dict (as a MONAI bundle's model_autoencoder.pt)
  autoencoder_kl_io.pt     {"input", "mu", "sigma", "decoded"}: encode(input) and decode(mu)
  autoencoder_maisi.pt     MAISI AutoencoderKlMaisi state dict (as NV-Generate-CTMR's autoencoder_v1.pt)
  autoencoder_maisi_io.pt  the same outputs for it
  autoencoder_maisi_fp16norm_io.pt  the same weights with norm_float16=True, as NVIDIA's config_network_rflow.json sets
                           it: {"input", "mu", "decoded"}. MONAI's own fp32 forward refuses it (its convolutions get
                           the float16 GroupNorm output; MAISI runs it under CUDA autocast), so every convolution's
                           input is cast to float32 by a forward pre-hook: the float16 rounding of the normalised,
                           scaled and shifted values (and their SiLU) is MAISI's, the convolutions float32
  unet_monai.pt            MONAI DiffusionModelUNet state dict (as the BraTS bundle's model.pt): attention at the two
                           deeper levels and in the middle, per-level residual blocks, convolution down/upsampling
  unet_monai_io.pt         {"x", "t", "out"}: out = net(x, t)
  unet_maisi.pt            MAISI DiffusionModelUNetMaisi in NV-Generate-CTMR's file format ({"unet_state_dict",
                           "scale_factor", "num_train_timesteps", ...}): residual-block up/downsampling, no attention
                           output projection, 128 class (modality) embeddings, spacing input
  unet_maisi_io.pt         {"x", "t", "class", "spacing", "out"}
  networks.json            the settings each network was built with
  rflow_maisi.pt           MONAI's RFlowScheduler as MAISI sets it: timestep lists for several latent sizes and step
                           counts, and a whole 5-step run of the MAISI U-Net above from fixed noise (modality 1,
                           spacing, guidance 0 and 2, the unconditional pass with class 0), decoded by the MAISI
                           autoencoder above after dividing by the scale factor, as NV-Generate-CTMR's inference does
  ddim_monai.pt            MONAI's DDIMScheduler as the BraTS bundle sets it (scaled-linear betas 0.0015-0.0195, no clipping):
                           a whole 10-step run of the DiffusionModelUNet above from fixed noise, decoded by the
                           AutoencoderKL above: {"noise", "timesteps", "latent", "image"}
  autoencoder_maisi_recon.pt  a CT volume in HU and an MR volume (RAS (x, y, z) arrays) prepared as MAISI prepares
                           them (ScaleIntensityRange -1000..1000 HU -> 0..1; ScaleIntensityRangePercentiles 0..99.5
                           -> 0..1, clipped) and passed through the MAISI autoencoder above (encode, mean, decode):
                           {"ct", "ct_recon", "mr", "mr_recon"}, the reconstructions in the network's 0..1
  controlnet_maisi.pt      MAISI ControlNetMaisi in NV-Generate-CTMR's file format ({"controlnet_state_dict", ...}), the
                           encoder of the MAISI U-Net above with attention output projections (include_fc, as
                           NVIDIA's controlnet_def) and a conditioning embedding of the 8 label bit planes
  controlnet_maisi_io.pt   {"x", "t", "class", "spacing", "label" (int16, RAS (x, y, z) at image resolution; the
                           ControlNet took its bit planes, NV-Generate-CTMR's binarize_labels), "down_0".., "mid" (the ControlNet's residuals),
                           "out" (the MAISI U-Net with them, as run_controlnet_conditioned_image_dm calls it), "out_last_x1000" (the
                           same with the last residual x 1000)}
  controlnet_rflow.pt      a whole 3-step image-from-mask run as NV-Generate-CTMR's run_controlnet_conditioned_image_dm
                           does it (guidance 0, modality 1): {"noise", "label", "spacing", "latent", "image"}: the image
                           in HU after the CT mapping and crop_img_body_mask (label 0 -> -1000)
  train_step.pt            one training step's loss and gradients, as NV-Generate-CTMR's diff_model_train.py computes them
                           for the MAISI U-Net above (RFlowScheduler.sample_timesteps from uniform draws "maisi_u",
                           add_noise, target x0 - noise, L1; "maisi_t_discrete": the timesteps with discrete ones) and
                           as a MONAI bundle trains the DiffusionModelUNet above (DDPMScheduler.add_noise on the
                           bundle's scaled-linear betas, target the noise, MSE)
  torch_save_types.pt      a MAISI-style U-Net file ({"unet_state_dict": OrderedDict with _metadata, "scale_factor": tensor,
                           ...}) with every kind of value torch.save writes in such files (fp16 / bf16 / int64 / bool / uint16 tensors,
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


def maisi_sampling_loop(noise, steps, velocity):
    """NV-Generate-CTMR's sampling loop: MONAI's RFlowScheduler as MAISI sets it, Euler steps from each timestep to the
    next one (0 after the last), velocity(x, t) the network's output at the fp16 timestep t; returns the last latent."""
    import torch
    from monai.networks.schedulers import RFlowScheduler

    s = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=False, sample_method="logit-normal",
                       use_timestep_transform=True, base_img_size_numel=32 * 32 * 32, spatial_dim=3)
    s.set_timesteps(num_inference_steps=steps, input_img_size_numel=torch.prod(torch.tensor(noise.shape[2:])))
    ts = s.timesteps
    nexts = torch.cat((ts[1:], torch.tensor([0], dtype=ts.dtype)))
    x = noise.clone()
    with torch.no_grad():
        for t, next_t in zip(ts, nexts):
            x, _ = s.step(velocity(x, torch.Tensor((t,))), t, x, next_t)
    return x


def write_rflow(unet, autoencoder, scale_factor):
    import torch
    from monai.networks.schedulers import RFlowScheduler

    def scheduler():
        return RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=False, sample_method="logit-normal",
                              use_timestep_transform=True, base_img_size_numel=32 * 32 * 32, spatial_dim=3)

    out = {}
    lists = []
    for steps, shape in [(30, (128, 128, 128)), (30, (64, 64, 32)), (30, (120, 96, 50)), (5, (8, 8, 8)),
                         (50, (32, 32, 32)), (7, (20, 30, 10))]:
        s = scheduler()
        s.set_timesteps(num_inference_steps=steps, input_img_size_numel=torch.prod(torch.tensor(shape)))
        lists.append({"steps": steps, "shape": list(shape), "timesteps": [float(t) for t in s.timesteps]})
    noise = torch.randn(1, 4, 8, 8, 8)
    spacing = (torch.tensor([[1.5, 1.5, 2.0]]).double() * 1e2).half()  # as diff_model_infer's prepare_tensors
    modality = torch.tensor([1])
    for guidance in (0.0, 2.0):
        def velocity(x, tt):
            if guidance == 0:
                return unet(x=x, timesteps=tt, spacing_tensor=spacing.float(), class_labels=modality)
            both = unet(x=torch.cat([x] * 2), timesteps=torch.cat([tt] * 2), spacing_tensor=torch.cat([spacing.float()] * 2),
                        class_labels=torch.cat([modality, torch.zeros_like(modality)]))
            cond, uncond = both.chunk(2)
            return uncond + guidance * (cond - uncond)

        x = maisi_sampling_loop(noise, 5, velocity)
        with torch.no_grad():
            image = autoencoder.decode(x / torch.tensor(scale_factor))
        key = "cfg" if guidance else "plain"
        out[f"latent_{key}"] = x
        out[f"image_{key}"] = image
    out["noise"] = noise
    out["spacing"] = spacing.float()
    out["scale_factor"] = torch.tensor(scale_factor)
    torch.save(out, OUT / "rflow_maisi.pt")
    (OUT / "rflow_timesteps.json").write_text(json.dumps(lists) + "\n")
    print(f"rflow_maisi: 5-step image range {out['image_plain'].min():.3f}..{out['image_plain'].max():.3f}")


def write_ddim(unet, autoencoder):
    import torch
    from monai.networks.schedulers import DDIMScheduler

    s = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0195,
                      clip_sample=False)
    s.set_timesteps(num_inference_steps=10)
    noise = torch.randn(1, 3, 8, 8, 4)
    x = noise.clone()
    with torch.no_grad():
        for t in s.timesteps:
            eps = unet(x, timesteps=torch.asarray((t,)))
            x, _ = s.step(eps, t, x)
        image = autoencoder.decode(x)
    torch.save({"noise": noise, "timesteps": s.timesteps.clone(), "latent": x, "image": image}, OUT / "ddim_monai.pt")
    print(f"ddim_monai: timesteps {s.timesteps.tolist()} image range {image.min():.3f}..{image.max():.3f}")


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
    sd["u16"] = torch.tensor([1, 60000, 7]).to(torch.uint16)  # saved through _rebuild_tensor_v3 (an untyped storage + dtype)
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("conv", {"version": 2})])
    obj = {"epoch": 7, "loss": 0.125, "num_train_timesteps": 1000, "big": 2 ** 40, "negative": -3, "scale_factor": torch.tensor(1.0549),
           "unet_state_dict": sd, "name": "rflow-ct", "flag": True, "nothing": None, "steps": [1, 2.5, "x"],
           "shape": (4, 64, 64), "codes": {1, 9}, "numpy": np.float64(0.5)}
    torch.save(obj, OUT / "torch_save_types.pt")
    torch.save(collections.OrderedDict(w=torch.ones(2)), OUT / "torch_save_legacy.pt", _use_new_zipfile_serialization=False)


def write_reconstruction(autoencoder):
    import torch
    from monai.transforms import ScaleIntensityRange, ScaleIntensityRangePercentiles

    g = torch.Generator().manual_seed(20261206)
    x, y, z = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), torch.arange(8.0), indexing="ij")
    # an off-centre ellipsoid of soft tissue in air with a dense core above the window, and noise: not symmetric
    # along any axis, so that a mirrored or transposed reading shows
    r = ((x - 4.5) / 4) ** 2 + ((y - 9) / 6) ** 2 + ((z - 3) / 3) ** 2
    ct = torch.where(r < 1, 40.0, -1024.0) + torch.where(r < 0.2, 1460.0, 0.0) + 30 * torch.randn(x.shape, generator=g)
    mr = torch.where(r < 1, 600.0, 20.0) - torch.where(r < 0.2, 450.0, 0.0) + x * 10 + 25 * torch.randn(x.shape, generator=g)
    out = {"ct": ct, "mr": mr}
    prepare = {"ct": ScaleIntensityRange(a_min=-1000, a_max=1000, b_min=0, b_max=1, clip=True),
               "mr": ScaleIntensityRangePercentiles(lower=0, upper=99.5, b_min=0, b_max=1, clip=True)}
    for name, f in prepare.items():
        with torch.no_grad():
            mu, _ = autoencoder.encode(torch.as_tensor(f(out[name][None]))[None].float())
            out[name + "_recon"] = autoencoder.decode(mu)[0, 0]
    torch.save(out, OUT / "autoencoder_maisi_recon.pt")
    print("autoencoder_maisi_recon: CT and MR through the MAISI autoencoder")


def write_fp16_norm(maisi, ae_maisi):
    import torch
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

    net = AutoencoderKlMaisi(**dict(maisi, norm_float16=True)).eval()
    net.load_state_dict(ae_maisi.state_dict())
    for m in net.modules():
        if isinstance(m, torch.nn.Conv3d):
            m.register_forward_pre_hook(lambda _, args: (args[0].float(),))
    x = torch.randn(1, 1, 8, 16, 12, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        mu, _ = net.encode(x)
        decoded = net.decode(mu)
    assert decoded.dtype == torch.float32
    torch.save({"input": x, "mu": mu, "decoded": decoded}, OUT / "autoencoder_maisi_fp16norm_io.pt")
    print(f"autoencoder_maisi_fp16norm: decoded range {decoded.min():.3f}..{decoded.max():.3f}")


def write_controlnet(unet_maisi, unet_maisi_net, ae_maisi, randomise, settings):
    import torch
    from monai.apps.generation.maisi.networks.controlnet_maisi import ControlNetMaisi

    torch.manual_seed(20261207)
    cn = dict(spatial_dims=3, in_channels=4, num_channels=unet_maisi["num_channels"], attention_levels=unet_maisi["attention_levels"],
              num_head_channels=unet_maisi["num_head_channels"], num_res_blocks=2, norm_num_groups=2, norm_eps=1e-6,
              resblock_updown=True, include_fc=True, num_class_embeds=128, conditioning_embedding_in_channels=8,
              conditioning_embedding_num_channels=[8, 4, 8], use_checkpointing=False, use_flash_attention=False)
    net = randomise(ControlNetMaisi(**cn))
    torch.save({"epoch": 2, "loss": 0.5, "num_train_timesteps": 1000, "scale_factor": torch.tensor(1.0549),
                "controlnet_state_dict": net.state_dict()}, OUT / "controlnet_maisi.pt")
    settings["controlnet_maisi"] = cn

    def bit_planes(label):  # NV-Generate-CTMR's binarize_labels
        mask = 2 ** torch.arange(8).to(label.device, label.dtype)
        return label.unsqueeze(-1).bitwise_and(mask).ne(0).byte().squeeze(1).permute(0, 4, 1, 2, 3)

    def phantom_label(shape, g):  # body (200) with organs (1, 3, 28) and a tumour (23): MAISI's label values
        x, y, z = torch.meshgrid(*[torch.arange(float(n)) for n in shape], indexing="ij")
        c = [n / 2 for n in shape]
        r = ((x - c[0]) / (0.45 * shape[0])) ** 2 + ((y - c[1]) / (0.4 * shape[1])) ** 2 + ((z - c[2]) / (0.48 * shape[2])) ** 2
        lab = torch.where(r < 1, 200, 0)
        lab = torch.where(((x - 0.35 * shape[0]) ** 2 + (y - c[1]) ** 2) < (0.15 * shape[0]) ** 2, 1, lab) * (r < 1)
        lab = torch.where((x > 0.6 * shape[0]) & (y < 0.45 * shape[1]) & (r < 0.7), 3, lab)
        lab = torch.where((z > 0.7 * shape[2]) & (r < 0.9) & (lab == 200), 28, lab)
        lab = torch.where(((x - 0.3 * shape[0]) ** 2 + (y - 0.55 * shape[1]) ** 2 + (z - c[2]) ** 2) < 4, 23, lab)
        noise = torch.rand(shape, generator=g) < 0.01  # a few stray labels everywhere
        return torch.where(noise, torch.randint(0, 133, shape, generator=g), lab).long()

    g = torch.Generator().manual_seed(7)
    label = phantom_label((32, 64, 32), g)[None, None]  # [1, 1, x, y, z] at image resolution (latent 8 x 16 x 8)
    x = torch.randn(1, 4, 8, 16, 8)
    t = torch.tensor([731.5]).half()
    spacing = torch.tensor([[150.0, 150.0, 200.0]])
    modality = torch.tensor([1])
    cond = bit_planes(label).float()
    with torch.no_grad():
        down, mid = net(x=x, timesteps=t, controlnet_cond=cond, class_labels=modality)
        out = unet_maisi_net(x=x, timesteps=t, spacing_tensor=spacing, class_labels=modality,
                             down_block_additional_residuals=down, mid_block_additional_residual=mid)
        # the last residual x 1000: MAISI's in-place addition also feeds it to the middle block, which then shows
        scaled = unet_maisi_net(x=x, timesteps=t, spacing_tensor=spacing, class_labels=modality,
                                down_block_additional_residuals=[d.clone() for d in down[:-1]] + [down[-1] * 1000],
                                mid_block_additional_residual=mid.clone())
    io = {"x": x, "t": t, "class": modality, "spacing": spacing, "label": label[0, 0].short(), "mid": mid, "out": out, "out_last_x1000": scaled}
    for i, d in enumerate(down):
        io[f"down_{i}"] = d
    torch.save(io, OUT / "controlnet_maisi_io.pt")
    print(f"controlnet_maisi: {len(down)} residuals, U-Net out range {out.min():.3f}..{out.max():.3f}")

    # image from mask, 3 steps, as run_controlnet_conditioned_image_dm (fp32: no autocast on the CPU)
    label = phantom_label((32, 32, 32), g)[None, None]
    cond = bit_planes(label).float()
    noise = torch.randn(1, 4, 8, 8, 8)
    spacing = torch.tensor([[150.0, 150.0, 200.0]])
    def velocity(x, tt):
        down, mid = net(x=x, timesteps=tt, controlnet_cond=cond, class_labels=modality)
        return unet_maisi_net(x=x, timesteps=tt, spacing_tensor=spacing, class_labels=modality,
                              down_block_additional_residuals=down, mid_block_additional_residual=mid)

    latents = maisi_sampling_loop(noise, 3, velocity)
    with torch.no_grad():
        image = ae_maisi.decode(latents / torch.tensor(1.0549))
    image = torch.clip(image, 0.0, 1.0) * 2000 - 1000  # CT: b 0..1 -> a -1000..1000
    image[label == 0] = -1000  # crop_img_body_mask
    torch.save({"noise": noise, "label": label[0, 0].short(), "spacing": spacing, "latent": latents, "image": image[0, 0]},
               OUT / "controlnet_rflow.pt")
    print(f"controlnet_rflow: image range {image.min():.1f}..{image.max():.1f}")


def write_train_step(unet_maisi_net, unet_monai_net):
    import torch
    from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

    torch.manual_seed(20261208)
    out = {}
    x0, noise = torch.randn(2, 4, 8, 16, 8), torch.randn(2, 4, 8, 16, 8)
    spacing, modality = torch.tensor([[150.0, 150.0, 200.0], [100.0, 100.0, 250.0]]), torch.tensor([1, 1])
    for discrete in (False, True):
        s = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=discrete, sample_method="uniform",
                           use_timestep_transform=True, base_img_size_numel=32 * 32 * 32, spatial_dim=3)
        torch.manual_seed(11)
        t = s.sample_timesteps(x0)
        out["maisi_t_discrete" if discrete else "maisi_t"] = t
    torch.manual_seed(11)
    out["maisi_u"] = torch.rand((2,))  # the uniform draws sample_timesteps made
    s = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=False, sample_method="uniform",
                       use_timestep_transform=True, base_img_size_numel=32 * 32 * 32, spatial_dim=3)
    t = out["maisi_t"]
    unet_maisi_net.zero_grad()
    pred = unet_maisi_net(x=s.add_noise(original_samples=x0, noise=noise, timesteps=t), timesteps=t, spacing_tensor=spacing,
                          class_labels=modality)
    loss = torch.nn.L1Loss()(pred.float(), (x0 - noise).float())
    loss.backward()
    out.update(maisi_x0=x0, maisi_noise=noise, maisi_spacing=spacing, maisi_class=modality, maisi_loss=loss.detach(),
               maisi_grad_conv_in=unet_maisi_net.conv_in.conv.weight.grad.clone(),
               maisi_grad_out=unet_maisi_net.out[2].conv.weight.grad.clone())
    unet_maisi_net.zero_grad()

    x0, noise = torch.randn(2, 3, 8, 12, 16), torch.randn(2, 3, 8, 12, 16)
    t = torch.tensor([10, 731])
    d = DDPMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0195)
    unet_monai_net.zero_grad()
    pred = unet_monai_net(x=d.add_noise(original_samples=x0, noise=noise, timesteps=t), timesteps=t)
    loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
    loss.backward()
    out.update(monai_x0=x0, monai_noise=noise, monai_t=t, monai_loss=loss.detach(),
               monai_grad_conv_in=unet_monai_net.conv_in.conv.weight.grad.clone())
    unet_monai_net.zero_grad()
    torch.save(out, OUT / "train_step.pt")
    print(f"train_step: MAISI L1 {out['maisi_loss']:.6f} (t {out['maisi_t'].tolist()}), bundle MSE {out['monai_loss']:.6f}")


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
    ae_kl = randomise(AutoencoderKL(**kl))
    record("autoencoder_kl", ae_kl, torch.randn(1, 1, 16, 12, 8))
    settings["autoencoder_kl"] = kl

    maisi = dict(spatial_dims=3, in_channels=1, out_channels=1, latent_channels=4, num_channels=[4, 8, 8],
                 num_res_blocks=[2, 2, 2], norm_num_groups=2, norm_eps=1e-6,
                 attention_levels=[False, False, False], with_encoder_nonlocal_attn=False,
                 with_decoder_nonlocal_attn=False, use_checkpointing=False, use_convtranspose=False,
                 norm_float16=False, num_splits=1, dim_split=1)
    ae_maisi = randomise(AutoencoderKlMaisi(**maisi))
    record("autoencoder_maisi", ae_maisi, torch.randn(1, 1, 8, 16, 12))
    settings["autoencoder_maisi"] = maisi

    from monai.networks.nets import DiffusionModelUNet
    from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi

    def record_unet(name, net, file_obj, inputs):
        with torch.no_grad():
            out = net(**inputs)
        torch.save(file_obj(net.state_dict()), OUT / f"{name}.pt")
        io = {"x": inputs["x"], "t": inputs["timesteps"], "out": out}
        if "class_labels" in inputs:
            io["class"] = inputs["class_labels"]
        if "spacing_tensor" in inputs:
            io["spacing"] = inputs["spacing_tensor"]
        torch.save(io, OUT / f"{name}_io.pt")
        print(f"{name}: input {tuple(inputs['x'].shape)} out range {out.min():.3f}..{out.max():.3f}")

    unet = dict(spatial_dims=3, in_channels=3, out_channels=3, channels=[8, 8, 16], attention_levels=[False, True, True],
                num_head_channels=[4, 4, 8], num_res_blocks=[1, 2, 1], norm_num_groups=4, norm_eps=1e-6)
    unet_monai_net = randomise(DiffusionModelUNet(**unet))
    record_unet("unet_monai", unet_monai_net, lambda sd: sd,
                {"x": torch.randn(2, 3, 8, 12, 16), "timesteps": torch.tensor([10, 731])})
    settings["unet_monai"] = unet

    unet_maisi = dict(spatial_dims=3, in_channels=4, out_channels=4, num_channels=[4, 4, 8, 8],
                      attention_levels=[False, False, True, True], num_head_channels=[0, 0, 4, 4], num_res_blocks=2,
                      norm_num_groups=2, norm_eps=1e-6, resblock_updown=True, include_fc=False, num_class_embeds=128,
                      include_spacing_input=True, use_flash_attention=False)
    maisi_file = lambda sd: {"epoch": 3, "loss": 0.25, "num_train_timesteps": 1000, "scale_factor": torch.tensor(1.0549),
                             "unet_state_dict": sd}
    t = torch.tensor([999.0, 312.5]).half()  # MAISI casts its continuous timesteps to fp16
    unet_maisi_net = randomise(DiffusionModelUNetMaisi(**unet_maisi))
    record_unet("unet_maisi", unet_maisi_net, maisi_file,
                {"x": torch.randn(2, 4, 8, 16, 8), "timesteps": t, "class_labels": torch.tensor([1, 9]),
                 "spacing_tensor": torch.tensor([[150.0, 150.0, 150.0], [100.0, 100.0, 250.0]])})
    settings["unet_maisi"] = unet_maisi
    write_rflow(unet_maisi_net, ae_maisi, scale_factor=1.0549)
    write_reconstruction(ae_maisi)

    write_torch_save_types()
    write_ddim(unet_monai_net, ae_kl)
    write_fp16_norm(maisi, ae_maisi)
    settings["autoencoder_maisi_fp16norm"] = dict(maisi, norm_float16=True)
    write_controlnet(unet_maisi, unet_maisi_net, ae_maisi, randomise, settings)
    write_train_step(unet_maisi_net, unet_monai_net)
    (OUT / "networks.json").write_text(json.dumps(settings, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
