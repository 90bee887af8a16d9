"""Looking inside a trained network: one module per picture, each with functions that return data
(arrays, numbers) and a separate `plot_*` function that draws them on a matplotlib Figure.

    load.py         a run directory -> config, data, model with its trained weights (eval mode)
    picture.py      PNG written atomically + the same image in the run's TensorBoard; shared drawing helpers
    layers.py       layer names and output shapes (forward hooks)
    actmax.py       activation maximization: the input that maximizes a class logit, a unit or a channel
    filters.py      first-layer convolution kernels
    saliency.py     |dS_c/dx|
    adversarial.py  FGSM, PGD, the one-pixel attack; accuracy against eps
    landscape.py    loss along filter-normalized random directions (Li et al. 2018)
    boundary.py     decision regions of a 2-D classifier
    curves.py       training and validation curves of several runs
    confusion.py    confusion matrix on the test split
    activations.py  per-layer activations and gradients of one batch
"""
