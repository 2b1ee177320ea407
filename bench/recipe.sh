# The model sizes and regularisation of checkpoints/default's recipe, sourced by the scripts
# that train it or an arm like it (bench/quality_train.sh, bench/gpu/train.sh), so the sizes
# are written once: a 4-layer d 192 decoder, a 2-layer d 128 encoder, a 16-d latent, 6
# Fourier features per condition.
# shellcheck disable=SC2034  # the arrays are for the scripts that source this file
ARCH=(--d-model 192 --n-heads 4 --n-layers 4 --d-ff 768
  --enc-d-model 128 --enc-heads 2 --enc-layers 2 --enc-d-ff 512 --latent-dim 16 --n-fourier 6)
# KL weight with free bits, each condition dropped alone and all of them together
REGULARISE=(--beta 0.5 --free-bits 0.1 --cond-drop 0.1 --uncond-drop 0.1)
