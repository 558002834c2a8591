"""The verifiers inside other trainers, in their own contracts (docs/service.md, "use it from your trainer").

``verifiers.integrations.trl``   ``trl_reward(domain, url=None)``: a TRL reward function (``None`` for an error)
``verifiers.integrations.verl``  ``compute_score``: veRL's ``custom_reward_function.path``

OpenRLHF and SandboxFusion clients need no adapter: they call the service's ``/get_reward`` and ``/run_code``.
Each module imports only what it uses; neither imports TRL or veRL.
"""
