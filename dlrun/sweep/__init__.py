"""Hyperparameter sweeps: Hydra's sweep grammar, an Optuna study as the ledger, one process per training.

    from dlrun.sweep.runner import plan, run
    from dlrun.sweep.results import collect

    spec, sweep_dir = plan(["optim=sgd,adam", "optim.lr=0.01,0.1"], seeds=[0, 1], jobs=2)
    summary = run(spec, sweep_dir)          # trials/<n>/seed<k>/ are normal run directories
    results = collect(sweep_dir)            # rows best first: hyperparameters, mean ± std over seeds

space.py     Hydra's sweep grammar -> Optuna distributions; the points checked before a sweep starts
runner.py    the study loop: jobs as subprocesses, failures, budget, resume, shared storage
trial.py     the training process of one (trial, seed): `python -m dlrun.sweep.trial`
results.py   rows of a sweep or of a folder of runs, best first; table, csv, markdown, json
study.py     what runner and results share: the sweep's arguments (sweep.yaml), the study's storage
hparams.py   TensorBoard's HParams view of a sweep (<sweep>/tensorboard/)

Nothing is imported here, so that a training process (trial.py) starts without Optuna.
"""
