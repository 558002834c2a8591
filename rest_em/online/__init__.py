"""The machinery of online RL (``algorithm: grpo``, rest_em/algorithms/grpo.py): TRL reward functions over
the project's verifiers, and the training curves of the report.

``rewards`` turns a problem set's verifier into a TRL reward function (pass 1.0, fail 0.0, error
None: no reward, left out of the advantage, counted, and past ``verifier.max_error_rate`` the run
stops). ``curves`` draws the training curves the GRPO report section links. Nothing here imports torch.
"""
