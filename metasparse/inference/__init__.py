"""Using a trained model on text: reading what a user brings, tagging it, writing CoNLL-U."""
