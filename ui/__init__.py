"""The Streamlit web page (``searchapp ui``); it reads only through ``Library``."""
