"""Inspection: substation scenes built from the asset list, rendered with Open3D."""
