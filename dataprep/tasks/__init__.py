"""What each task makes of its records: pretraining (causal LM, MLM, span corruption), instruction
fine-tuning (templates, chat, loss masks from character spans) and few-shot prompts. Each task
plugs its chunk worker, packer, rows and manifest section into the common run (:mod:`dataprep.build`)."""
