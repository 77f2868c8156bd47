"""What the lesson 09b bench scripts share: the judge trained on real shapes, and the seen / held-out combinations."""
import torch
from llmcourse.clip import COLOURS, SHAPES, HELDOUT_COMBOS, TEST_COMBOS, make_shape_captions, to_pixels
from llmcourse.diffusion import judge_classes, train_judge

IMAGE_SIZE = 16  # the lesson's quick image size

def real_judge(n_real:int=6000, steps:int=200, image_size:int=IMAGE_SIZE):
    "A judge trained on `n_real` real images (seed 11), and its accuracy on 1,000 other real images (seed 12)."
    real, check = make_shape_captions(n_real, "all", seed=11, image_size=image_size), make_shape_captions(1000, "all", seed=12, image_size=image_size)
    judge = train_judge(to_pixels(real.images), torch.as_tensor(real.labels), steps=steps)
    return judge, float((judge_classes(judge, to_pixels(check.images)).numpy() == check.labels).mean())

def seen_and_held():
    "The 12 colour x shape combinations drawn in training (seen) and the 12 never drawn (held out), in the lesson's order."
    held = list(HELDOUT_COMBOS + TEST_COMBOS)
    return [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in held], held
