"""Pure planning: desired state and a snapshot in, actions or a refusal out."""
