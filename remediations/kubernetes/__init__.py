"""Kubernetes remediations, one module per action family.

- ``api``: the shared plumbing (the action base; re-exports ``kubeapi``)
- ``kubeapi``: the per-call API view (reads, conditioned writes) and the write plan
- ``objects``: reading the plain-dict form of Kubernetes objects (pure)
- ``retry``: bounded retries on transient API failures, typed errors for the rest
- ``api_errors``: recognising the client's ApiException without importing the client
- ``replay``: write records, so a step retried after a crash does not write twice (pure)
- ``quantity``: resource quantities ("512Mi", "250m"): parse, scale, format (pure)
- ``release``: what counts as a release of a Deployment (not a restart, not remediator's own
  edit), for the probe and the rollback's default revision (pure)
- ``restart``: ``kubernetes.rollout_restart``
- ``scale``: ``kubernetes.scale``
- ``scale_write``: its conditioned write of the count, sent again on a conflict
- ``container``: ``kubernetes.set_resources`` and ``kubernetes.set_env``
- ``rollback``: ``kubernetes.rollout_undo``
- ``pods``: ``kubernetes.delete_pod``
- ``evict``: evicting pods through the Eviction API (PodDisruptionBudgets), for ``pods``
- ``pod_holder``: which workload replaces a pod and keeps the record of its deletion
- ``pod_replay``: a ``delete_pod`` step taken up again, carrying out its own record
- ``probe``: read-only facts for rules' live conditions (a Deployment's newest release)
- ``catalog``: ``ACTIONS``, every action above, for the registry

Nothing is imported here, and no module here imports the kubernetes_asyncio client library
when it is imported: only code handed a client does (``api_errors``), so a process without
cluster credentials never loads it.
"""
