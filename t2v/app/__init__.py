"""The web app of `t2v serve` (Gradio): see t2v.app.ui."""
