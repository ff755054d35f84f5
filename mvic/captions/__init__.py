"""Stage 3: marker captions for composites (render, template backend; model backends later)."""
