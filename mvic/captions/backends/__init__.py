"""Model backends behind one interface (`base.ModelBackend`): gemini (google-genai) and
openai-compatible (openai). The offline `template` backend is `captions.template`."""
