"""Named experiment presets (YAML files in this folder)."""
