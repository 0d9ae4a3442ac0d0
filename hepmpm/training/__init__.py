"""Lightning training: the data module, schedules, and the pre-training module and driver."""
