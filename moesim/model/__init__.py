"""The model: its configuration resolved into sizes (``moe``), its layers and its memory per GPU."""
