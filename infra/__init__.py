"""The AWS CDK app of realtime-ai-stack (``cdk synth`` / ``cdk deploy --all``)."""
