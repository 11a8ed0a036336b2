"""scloop's text modality (placeholder while stage 1 is written)."""
