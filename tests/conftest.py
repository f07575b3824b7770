"Run tests/test_docs.py after tests/test_notebooks.py: the docs site is built from the notebooks those tests executed."

def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name == 'test_docs.py')  # stable: every other test keeps its order
