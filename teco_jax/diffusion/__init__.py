"""The latent video diffusion baseline: schedules and DDIM (schedule.py), sampling and long videos
(sample.py), and `DiffusionWorldModel` (world_model.py), the same rollout API as TECO's WorldModel.
The denoiser is teco_jax/models/video_unet.py, the training task teco_jax/tasks/diffusion.py."""
