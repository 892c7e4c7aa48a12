"""``task: preference``: chosen/rejected pairs for DPO and reward models, labelled responses for KTO."""
