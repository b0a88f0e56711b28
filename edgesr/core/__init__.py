"""The core layer: the model registry and models, the evaluation protocol (MATLAB bicubic,
BT.601 Y, PSNR/SSIM), data, checkpoints and training. It imports no other edgesr layer."""
