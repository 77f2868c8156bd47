"""Lesson 09b: the noise schedules, `add_noise` and one DDPM / DDIM step equal `diffusers`' schedulers at 1e-6 over a
sweep of steps, schedules and prediction types, and the sweep fails on an off-by-one in t or a wrong alpha-bar."""
import pytest, torch
from diffusers import DDIMScheduler, DDPMScheduler
from llmcourse.diffusion import NoiseSchedule, cosine_betas, ddim_step, ddpm_step, linear_betas, sampling_steps

BETAS = {"linear": linear_betas, "cosine": cosine_betas}
HF_NAME = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
HF_PRED = {"epsilon": "epsilon", "v": "v_prediction"}

def _hf(cls, schedule, prediction_type, **kw):
    return cls(num_train_timesteps=1000, beta_schedule=HF_NAME[schedule], prediction_type=HF_PRED[prediction_type], **kw)

def _worst(ours, schedule, prediction_type, n_ddim=50, eta=0.0, clip=True):
    "Largest difference from diffusers of add_noise, every DDPM step (1000-step and strided) and every DDIM step."
    g = torch.Generator().manual_seed(1)
    x, out, x0 = torch.randn(3, 2, 5, 5, generator=g), torch.randn(3, 2, 5, 5, generator=g) * 1.5, torch.rand(3, 2, 5, 5, generator=g) * 2 - 1
    ddpm, ddim = _hf(DDPMScheduler, schedule, prediction_type, clip_sample=clip), _hf(DDIMScheduler, schedule, prediction_type, clip_sample=clip)
    worst = 0.0
    t_all = torch.arange(1000)
    xb = x0[:1].expand(1000, -1, -1, -1); nb = out[:1].expand(1000, -1, -1, -1)
    worst = max(worst, (ours.add_noise(xb, nb, t_all) - ddpm.add_noise(xb, nb, t_all)).abs().max().item())
    for t in range(0, 1000, 7):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        ref = ddpm.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        worst = max(worst, (ddpm_step(ours, out, t, x, noise)[0] - ref).abs().max().item())
    ddpm.set_timesteps(n_ddim)
    for t in ddpm.timesteps.tolist():
        ref = ddpm.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        worst = max(worst, (ddpm_step(ours, out, t, x, noise, prev_t=t - 1000 // n_ddim)[0] - ref).abs().max().item())
    ddim.set_timesteps(n_ddim)
    assert ddim.timesteps.tolist() == sampling_steps(1000, n_ddim)
    for t in ddim.timesteps.tolist():
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        ref = ddim.step(out, t, x, eta=eta, variance_noise=noise).prev_sample
        worst = max(worst, (ddim_step(ours, out, t, t - 1000 // n_ddim, x, eta, noise)[0] - ref).abs().max().item())
    return worst

@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v"])
@pytest.mark.parametrize("n_ddim,eta,clip", [(50, 0.0, True), (10, 1.0, True), (25, 0.5, False)])
def test_schedules_and_steps_equal_diffusers(schedule, prediction_type, n_ddim, eta, clip):
    ours = NoiseSchedule(BETAS[schedule](), prediction_type=prediction_type, clip_sample=clip)
    torch.testing.assert_close(ours.alphas_cumprod, _hf(DDPMScheduler, schedule, prediction_type).alphas_cumprod, atol=1e-6, rtol=0)
    assert _worst(ours, schedule, prediction_type, n_ddim, eta, clip) < 1e-6

class _OffByOne(NoiseSchedule):
    "reads alpha_bar one step early"
    def alpha_bar(self, t): return super().alpha_bar(torch.as_tensor(t) - 1)

class _OffByOneLate(NoiseSchedule):
    "reads alpha_bar one step late (the last step stays in range)"
    def alpha_bar(self, t): return super().alpha_bar((torch.as_tensor(t) + 1).clamp(max=self.T - 1))

class _NoCumprod(NoiseSchedule):
    "alpha_bar = 1 - beta, forgetting the cumulative product"
    def __init__(self, *a, **kw): super().__init__(*a, **kw); self.alphas_cumprod = 1 - self.betas

class _SqrtSwap(NoiseSchedule):
    "sqrt(alpha_bar) stored where alpha_bar belongs"
    def __init__(self, *a, **kw): super().__init__(*a, **kw); self.alphas_cumprod = self.alphas_cumprod.sqrt()

@pytest.mark.parametrize("broken", [_OffByOne, _OffByOneLate, _NoCumprod, _SqrtSwap])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v"])
def test_the_parity_sweep_catches_a_wrong_alpha_bar(broken, prediction_type):
    ours = broken(linear_betas(), prediction_type=prediction_type)
    assert _worst(ours, "linear", prediction_type) > 1e-4, f"{broken.__doc__} went unnoticed"

def test_bad_schedules_say_what_is_wrong():
    with pytest.raises(ValueError, match="prediction_type"): NoiseSchedule(linear_betas(), prediction_type="sample")
    with pytest.raises(ValueError, match=r"values in \(0, 1\)"): NoiseSchedule(torch.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="past the schedule"): NoiseSchedule.linear(100).alpha_bar(100)
    with pytest.raises(ValueError, match="between 1 and 1000"): sampling_steps(1000, 0)

def _tiny_sd(prediction_type):
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=32, attention_head_dim=4, norm_num_groups=4).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2).eval()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=100, bos_token_id=0, pad_token_id=1, eos_token_id=2, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=16)).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=None, unet=unet, scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe

@pytest.mark.parametrize("prediction_type,scale,steps", [("epsilon", 7.5, 10), ("v_prediction", 3.0, 7), ("epsilon", 1.5, 25)])
def test_sd_generate_equals_the_diffusers_pipeline(prediction_type, scale, steps):
    from llmcourse.diffusion import sd_generate
    pipe = _tiny_sd(prediction_type)
    with torch.no_grad():
        ids = torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(1))
        emb, neg = pipe.text_encoder(ids[:2]).last_hidden_state, pipe.text_encoder(ids[2:]).last_hidden_state
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    ours_sched = NoiseSchedule(pipe.scheduler.betas, prediction_type="v" if prediction_type == "v_prediction" else "epsilon",
                               clip_sample=False, final_alpha_bar=pipe.scheduler.alphas_cumprod[0].item())
    ours = sd_generate(pipe.unet, pipe.vae, ours_sched, emb, neg, scale=scale, steps=steps, latents=latents, height=16, width=16)
    ref = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, guidance_scale=scale, num_inference_steps=steps, latents=latents,
               height=16, width=16, output_type="pt").images * 2 - 1
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)

def test_bad_inputs_say_what_to_do():
    from llmcourse.diffusion import UNet, UNetConfig, sample
    with pytest.raises(ValueError, match=r"expected \(B, 3, 16, 16\)"): UNet(UNetConfig.tiny())(torch.zeros(1, 3, 8, 8), torch.tensor(0))
    with pytest.raises(ValueError, match="divisible"): UNetConfig(image_size=10, widths=(16, 32, 64))
    with pytest.raises(ValueError, match="method"): sample(lambda x, t: x, NoiseSchedule.linear(), (1, 3, 4, 4), method="euler")
