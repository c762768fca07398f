"""Configure the extension's CMakeLists.txt against a stand-in Slicer package.

A Slicer build tree cannot be had here, so ``Slicer_DIR`` points to a small SlicerConfig.cmake whose
``slicerMacroBuildScriptedModule`` and ``slicer_add_python_unittest`` parse their arguments exactly as
Slicer's own macros do (CMake/SlicerMacroBuildScriptedModule.cmake: options WITH_GENERIC_TESTS,
WITH_SUBDIR, VERBOSE; NAME; SCRIPTS, RESOURCES; unknown keywords and missing files are fatal.
CMake/SlicerMacroPythonTesting.cmake: TESTNAME_PREFIX, SCRIPT; SLICER_ARGS) and record what they were
given.  The test checks that the build files configure and register what the extension needs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STUB_CONFIG = r"""
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/GenerateConfig.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/CPack.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR ${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
set(RECORD ${CMAKE_BINARY_DIR}/slicer-macros.txt)
file(WRITE ${RECORD} "")

macro(slicerMacroBuildScriptedModule)
  set(options WITH_GENERIC_TESTS WITH_SUBDIR VERBOSE)
  set(oneValueArgs NAME)
  set(multiValueArgs SCRIPTS RESOURCES)
  cmake_parse_arguments(MY_SLICER "${options}" "${oneValueArgs}" "${multiValueArgs}" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): \"${MY_SLICER_UNPARSED_ARGUMENTS}\"")
  endif()
  if(NOT DEFINED MY_SLICER_NAME)
    message(FATAL_ERROR "NAME is mandatory")
  endif()
  foreach(var SCRIPTS RESOURCES)
    foreach(value ${MY_SLICER_${var}})
      if(NOT IS_ABSOLUTE ${value})
        set(value ${CMAKE_CURRENT_SOURCE_DIR}/${value})
      endif()
      if(NOT EXISTS ${value} AND NOT EXISTS ${value}.py)
        message(FATAL_ERROR "slicerMacroBuildScriptedModule(${var}) given nonexistent file or directory '${value}'")
      endif()
    endforeach()
  endforeach()
  string(REPLACE ";" "," _scripts "${MY_SLICER_SCRIPTS}")
  string(REPLACE ";" "," _resources "${MY_SLICER_RESOURCES}")
  file(APPEND ${RECORD} "module ${MY_SLICER_NAME} generic=${MY_SLICER_WITH_GENERIC_TESTS} scripts=${_scripts} resources=${_resources}\n")
endmacro()

macro(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "TESTNAME_PREFIX;SCRIPT" "SLICER_ARGS" ${ARGN})
  if(MY_UNPARSED_ARGUMENTS OR NOT MY_SCRIPT)
    message(FATAL_ERROR "slicer_add_python_unittest: bad arguments \"${ARGN}\"")
  endif()
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT})
    message(FATAL_ERROR "slicer_add_python_unittest: no ${MY_SCRIPT}")
  endif()
  file(APPEND ${RECORD} "unittest ${MY_SCRIPT}\n")
endmacro()
"""

CPACK = r"""
foreach(var EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION
            EXTENSION_ICONURL EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS)
  if("${${var}}" STREQUAL "")
    message(FATAL_ERROR "${var} is not set")
  endif()
endforeach()
file(APPEND ${RECORD} "cpack ${EXTENSION_NAME}${PROJECT_NAME} depends=${EXTENSION_DEPENDS}\n")
"""


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    base = tmp_path_factory.mktemp("cmake")
    stub = base / "Slicer"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(STUB_CONFIG)
    (stub / "UseSlicer.cmake").write_text("set(SLICER_USE_FILE_INCLUDED 1)\n")
    (stub / "GenerateConfig.cmake").write_text('file(APPEND ${RECORD} "generate-config\\n")\n')
    (stub / "CPack.cmake").write_text(CPACK)
    build = base / "build"
    out = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={stub}", "-DBUILD_TESTING=ON"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return build, (build / "slicer-macros.txt").read_text(encoding="utf-8").splitlines()


def test_every_module_is_built_with_generic_tests_and_a_self_test(configured):
    _build, record = configured
    modules = {line.split()[1]: line for line in record if line.startswith("module ")}
    assert sorted(modules) == sorted(p.stem for p in (ROOT / "SegTransfer").glob("SegTransfer*.py"))
    assert all("generic=TRUE" in line for line in modules.values())
    assert sorted(line.split()[1] for line in record if line.startswith("unittest ")) == sorted(f"{m}.py" for m in modules)
    assert record[-2:] == ["generate-config", "cpack SegTransfer depends=NA"]


def test_first_module_ships_the_core_and_the_shared_library(configured):
    """``import segtransfer`` and ``import SegTransferLib`` must work inside Slicer: every .py of both ships."""
    _build, record = configured
    line = next(line for line in record if line.startswith("module SegTransferCleanup "))
    scripts = set(line.split(" scripts=")[1].split(" resources=")[0].split(","))
    core = {p.relative_to(ROOT / "SegTransfer").as_posix() for p in (ROOT / "SegTransfer" / "segtransfer").rglob("*.py")}
    lib = {p.relative_to(ROOT / "SegTransfer").as_posix() for p in (ROOT / "SegTransfer" / "SegTransferLib").glob("*.py")}
    assert core <= scripts and lib <= scripts and "SegTransferCleanup.py" in scripts
    resources = line.split(" resources=")[1]
    shipped_models = sorted(p for p in (ROOT / "SegTransfer" / "segtransfer" / "resources").rglob("*") if p.is_file() and p.suffix != ".py")
    for model_file in shipped_models:
        assert model_file.relative_to(ROOT / "SegTransfer").as_posix() in resources


def test_panels_and_icons_are_placed_next_to_the_modules(configured):
    """ScriptedLoadableModule finds Resources/ beside the module files (resourcePath, the module icon)."""
    build, _record = configured
    placed = build / "lib" / "Slicer-5.8" / "qt-scripted-modules" / "Resources"
    for ui in (ROOT / "Resources" / "UI").glob("*.ui"):
        assert (placed / "UI" / ui.name).read_bytes() == ui.read_bytes()
    for icon in (ROOT / "Resources" / "Icons").glob("*.png"):
        assert (placed / "Icons" / icon.name).is_file()
