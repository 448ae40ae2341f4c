"""pushpipe: the domain package every Lambda function bundles.

Nothing in here imports the local cloud, the CLI or CDK; see ``pushpipe_local`` and
``infra`` for those.
"""

__version__ = "0.1.0"
