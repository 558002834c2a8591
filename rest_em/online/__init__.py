"""Online RL with the same verifiers as ReST-EM: ``algorithm: grpo`` (TRL's GRPOTrainer).

    from rest_em.online.grpo import run
    report = run(cfg)                    # runs/<name>/report.md, the same report as ReST-EM's

``rewards`` turns a problem set's verifier into a TRL reward function (pass 1.0, fail 0.0, error
None: no reward, left out of the advantage, counted, and past ``verifier.max_error_rate`` the run
stops). ``grpo`` drives the trainer in segments of ``grpo.eval_every`` steps; the checkpoint after
segment ``t`` is "iteration" ``t`` of the report. ``curves`` draws the training curves the report
links. Nothing here imports torch at module level except ``grpo`` inside ``run``.
"""
