"""What a stream node does when it runs on AWS: hands its clients over when ECS stops its
task (:mod:`.task_stop`), and writes its own metrics to CloudWatch (:mod:`.cloudwatch`)."""
