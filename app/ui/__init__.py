"""Small helpers that keep the Streamlit pages short (docs/app.md): sidebar, model cache, errors,
downloads (figures live in app/figures/)."""
