"""Instruction fine-tuning: records rendered through a pair template or a chat template into one
token sequence, and the loss mask that makes only the response tokens targets."""
