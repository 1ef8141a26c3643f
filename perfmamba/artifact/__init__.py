"""The artifact on top of the library: papermill execution of the notebooks (`notebooks`), the offline
jupyter-book build (`book`) and the whole pipeline behind `perfmamba reproduce` (`pipeline`).

Nothing in the library imports this package; it imports the library. `book` needs only the standard library
and `perfmamba.errors`, so the Docker image can install MathJax before the project is copied in.
"""
