import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_module_cycles as check  # noqa: E402


def crate(files: dict[str, str]) -> Path:
    root = Path(tempfile.mkdtemp())
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


class ModuleCycles(unittest.TestCase):
    def test_a_circle_is_found(self):
        src = crate({
            "lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
            "a.rs": "use crate::b::B;\n",
            "b/mod.rs": "pub fn f() { crate::a::g() }\n",
            "c.rs": "use crate::a::A;\n",
        })
        self.assertEqual(check.cycles(check.module_graph(src)), [["a", "b"]])
        self.assertEqual(check.main([str(src)]), 1)

    def test_layers_pass_and_comments_and_tests_do_not_count(self):
        src = crate({
            "lib.rs": "pub mod a;\npub mod b;\n#[cfg(test)]\nmod helper;\n",
            "a.rs": "use crate::b::B;\n// see crate::helper\n",
            "b.rs": "/// [`crate::a`] builds on this\n#[cfg(test)]\nmod tests {\n    use crate::a::A;\n    fn f() { {} }\n}\npub struct B;\n",
            "helper.rs": "use crate::a::A;\n",
        })
        self.assertEqual(check.cycles(check.module_graph(src)), [])
        self.assertEqual(check.main([str(src)]), 0)


if __name__ == "__main__":
    unittest.main()
