"""(room docstring: written in the layout commit)"""
