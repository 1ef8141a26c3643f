"""The artifact: papermill execution (`notebooks`), the offline book build (`book`), `perfmamba reproduce`
(`pipeline`). `book` needs only the standard library and `perfmamba.errors`, so the Docker image can install
MathJax before the project is copied in."""
