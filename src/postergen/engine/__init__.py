"""Training only: the run engine (run.py) with its GAN and SR tasks, the step, objectives and live
warnings. What readers share with training (checkpoint.py, runtime.py, diagnose.py, plots.py) sits below."""
