#!/usr/bin/env bash
# The paper's trainable baselines (its Tables 1 and 5), trained here on the shipped models' data
# (the same 45k CIFAR-10 training images, 5k held out, Food-101 outliers), each a resumable stage
# under checkpoints/ like train-default.sh's; `atd report` reads the exported files.
#
# The robust classifiers (HAT, AOE, ALOE, OSAD, ATOM) use the shipped AT extractor's preset (small) and
# optimizer (SGD, one-cycle, peak lr 0.2), scaled to a 2-core CPU: the paper's references train
# PreActResNet-18s for 100-200 epochs with PGD-10 training attacks; here each gets 15 epochs (half
# the shipped AT extractor's 30) with one random-start FGSM step (Wong et al. 2020) as its training
# attack, the attack the shipped AT uses, and keeps its best validation epoch (PGD-10 accuracy on
# 500 held-out images when it attacks in-distribution images, clean accuracy otherwise). The CPU
# minutes each cost and what it reached are in docs/training.md ("The paper's baselines").
# Environment: see stages.sh (ATD_DATA, CHECKPOINTS, BACKEND, STOP_AFTER).
source "$(dirname "$0")/stages.sh"

scaled=(--arch small --epochs 15 --lr 0.2 --attack fgsm)

# OpenGAN-fea (Kong and Ramanan 2021; the paper's "ATD without adversarial training"): ATD's
# discriminator and frozen generator on the standard model's features, Food-101 as the real
# outliers, trained without attacks; ATD's learning rate, epochs and selection otherwise.
stage opengan-fea atd.safetensors atd --extractor "$RUNS/standard/extractor.safetensors" --no-attack \
  --generator frozen --lr 2e-4 --epochs 10 --synthetic-outliers 0 --val-synthetic 600 --select-on clean

# HAT (Rade and Moosavi-Dezfooli 2022), the paper's extractor: TRADES (beta 3.5) plus helper
# examples x + 2 (x_adv - x) labelled by the shipped standard model (gamma 0.5), label smoothing 0.1.
stage hat extractor.safetensors extractor --method hat --helper "$RUNS/standard/extractor.safetensors" "${scaled[@]}"

# AOE: outlier exposure (uniform-label loss on Food-101, weight 0.5) with adversarial
# in-distribution images and clean outliers.
stage aoe extractor.safetensors extractor --method aoe "${scaled[@]}"

# ALOE (Chen et al. 2022): the same with the outliers attacked too (towards confident labels).
stage aloe extractor.safetensors extractor --method aloe "${scaled[@]}"

# OSAD (Shao et al. 2020): AT on the small preset with dual-attentive denoising blocks after
# stages 2-4, plus a decoder reconstructing the clean image from the attacked image's features
# (mean squared error, weight 1) and a head predicting the quarter turn of turned attacked images
# (cross-entropy, weight 1).
stage osad extractor.safetensors extractor --method osad "${scaled[@]}"

# ATOM (Chen et al. 2021), for Table 5: a K+1-way classifier trained on clean in-distribution
# images and on attacked outliers labelled as the extra class (weight 1), the outliers mined each
# epoch from a pool of Food-101 plus 9000 synthetic and 5000 derived outliers: sorted by the
# current model's outlier score, the hardest 12.5% skipped, the next quarter of the pool kept.
stage atom extractor.safetensors extractor --method atom --synthetic-outliers 9000 --derived-outliers 5000 \
  --oe-weight 1 "${scaled[@]}"

# OpenGAN-pixel (the paper's pixel variant of OpenGAN): no extractor file; a small-preset
# backbone with the same discriminator layers, trained from scratch on pixels against a DCGAN
# image generator trained with it, Food-101 as the real outliers, no attacks.
stage opengan-pixel atd.safetensors atd --pixel small --generator trained --no-attack \
  --lr 2e-4 --epochs 10 --synthetic-outliers 0 --val-synthetic 600 --select-on clean

echo "trained: $RUNS/{opengan-fea,hat,aoe,aloe,osad,atom,opengan-pixel}; atd report reads them"
