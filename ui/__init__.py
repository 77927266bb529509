"""The Streamlit web page (``searchapp ui``); it talks only to ``SearchService``."""
