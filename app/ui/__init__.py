"""Small helpers that keep the Streamlit pages short (issue 8): sidebar, model cache, errors,
downloads, figures for the app's own views, and the "lands with issue N" notice."""
