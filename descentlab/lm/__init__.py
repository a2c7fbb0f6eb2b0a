"""Language-model plumbing shared by the preference and rag wings."""
