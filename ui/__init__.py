"""The Streamlit UI: pages for operators, technicians and analysts. It calls the packages; no logic."""
