// Argument checks shared by the bindings (bindings.cpp). Every binding takes plain Python handles and
// converts them here, so a wrong argument is a TypeError or ValueError naming the argument, what was
// expected and what came, never pybind's generic "incompatible function arguments" nor a crash.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <climits>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace rnnfast_py {

namespace py = pybind11;

inline std::string shape_str(const std::vector<long>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// "list", "int 3", "str 'x'": enough to recognise what was passed without printing a whole array.
inline std::string describe(py::handle obj) {
  const std::string type = py::str(py::type::handle_of(obj).attr("__name__"));
  if (obj.is_none() || py::isinstance<py::array>(obj)) return type;
  if (py::isinstance<py::int_>(obj) || py::isinstance<py::float_>(obj) || py::isinstance<py::str>(obj))
    return type + " " + std::string(py::repr(obj)).substr(0, 40);
  return type;
}

// A Python int (or numpy integer) in [lo, hi]. bool is refused: True is rarely meant as a size.
inline long long int_arg(py::handle obj, const char* name, long long lo, long long hi) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(std::string(name) + ": expected an integer, got " + describe(obj));
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow || v < lo || v > hi)
    throw py::value_error(std::string(name) + ": expected an integer in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + std::string(py::str(index)));
  return v;
}

// A real number in (lo, hi] (ints and numpy floats too; NaN and bool refused).
inline double float_arg(py::handle obj, const char* name, double lo, double hi) {
  if (PyBool_Check(obj.ptr()) || !(PyFloat_Check(obj.ptr()) || PyIndex_Check(obj.ptr()) ||
                                   py::isinstance(obj, py::module_::import("numpy").attr("floating"))))
    throw py::type_error(std::string(name) + ": expected a number, got " + describe(obj));
  const double v = PyFloat_AsDouble(obj.ptr());
  if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  if (!(v > lo && v <= hi))
    throw py::value_error(std::string(name) + ": expected a number in (" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + std::string(py::str(obj)));
  return v;
}

// True or False (or a numpy bool): an int or None here is more likely a misplaced argument.
inline bool bool_arg(py::handle obj, const char* name) {
  if (obj.ptr() == Py_True) return true;
  if (obj.ptr() == Py_False) return false;
  const std::string type = py::str(py::type::handle_of(obj).attr("__name__"));
  if (type == "bool" || type == "bool_") return py::cast<bool>(obj);
  throw py::type_error(std::string(name) + ": expected True or False, got " + describe(obj));
}

inline std::string str_arg(py::handle obj, const char* name) {
  if (!py::isinstance<py::str>(obj)) throw py::type_error(std::string(name) + ": expected a str, got " + describe(obj));
  return obj.cast<std::string>();
}

// A numpy array (any dtype or shape yet); anything else is a TypeError.
inline py::array array_arg(py::handle obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array, got " + describe(obj));
  return py::reinterpret_borrow<py::array>(obj);
}

// A numpy array of ndim dimensions; returns its shape.
inline std::vector<long> dims_arg(py::handle obj, const char* name, int ndim, const char* layout) {
  py::array arr = array_arg(obj, name);
  std::vector<long> got(arr.shape(), arr.shape() + arr.ndim());
  if (arr.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) + "-D array " + layout +
                          ", got shape " + shape_str(got));
  return got;
}

// Sizes that the core takes as int (sequence length, batch, features).
inline int int_size(long n, const char* name) {
  if (n > INT_MAX)
    throw py::value_error(std::string(name) + ": expected at most " + std::to_string(INT_MAX) + ", got " +
                          std::to_string(n));
  return static_cast<int>(n);
}

// The array behind a Python object, which must be an aligned C-contiguous array of T with this
// shape (the Python layer converts user input; this guards the kernels against anything else).
// dtypes compare by value: an array that went through pickle has an equal but distinct dtype object.
template <class T>
py::array_t<T, py::array::c_style> checked(py::handle obj, const char* name, const std::vector<long>& shape,
                                           bool writable = false) {
  py::array arr = array_arg(obj, name);
  const py::dtype want = py::dtype::of<T>();
  // The dtype's name only on the error paths: str(dtype) runs numpy Python code (~3 us a call).
  auto want_s = [&] { return std::string(py::str(want)); };
  if (!arr.dtype().equal(want))
    throw py::type_error(std::string(name) + ": expected a " + want_s() + " array, got dtype " +
                         std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous " + want_s() +
                          " array, got a strided view (use numpy.ascontiguousarray)");
  if (!(arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + ": expected an aligned array, got an unaligned buffer");
  std::vector<long> got(arr.shape(), arr.shape() + arr.ndim());
  if (got != shape) throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " + shape_str(got));
  if (writable && !arr.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(arr);
}

template <class T>
const T* optional_ptr(py::handle obj, const char* name, const std::vector<long>& shape, std::vector<py::object>& keep) {
  if (obj.is_none()) return nullptr;
  auto arr = checked<T>(obj, name, shape);
  keep.push_back(arr);
  return arr.data();
}

template <class T>
T* optional_out(py::handle obj, const char* name, const std::vector<long>& shape, std::vector<py::object>& keep) {
  if (obj.is_none()) return nullptr;
  auto arr = checked<T>(obj, name, shape, true);
  keep.push_back(arr);
  return arr.mutable_data();
}

// An output may not share memory with an input: the kernels read inputs while writing outputs.
inline void no_overlap(py::handle out, const char* out_name, py::handle in, const char* in_name) {
  if (out.is_none() || in.is_none()) return;
  auto a = py::reinterpret_borrow<py::array>(out), b = py::reinterpret_borrow<py::array>(in);
  const auto* a0 = static_cast<const char*>(a.data());
  const auto* b0 = static_cast<const char*>(b.data());
  if (a.nbytes() && b.nbytes() && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes())
    throw py::value_error(std::string(out_name) + ": must not share memory with " + in_name);
}

// An object of a bound class (PackedWeights, TrainCache, Stream), or a TypeError naming the argument.
template <class C>
C& object_arg(py::handle obj, const char* name, const char* class_name) {
  if (!py::isinstance<C>(obj))
    throw py::type_error(std::string(name) + ": expected a " + class_name + ", got " + describe(obj));
  return obj.cast<C&>();
}

// Marks an object (a TrainCache or a Stream) in use by one call that released the GIL: a second
// thread using it at the same time gets a RuntimeError instead of corrupting its buffers.
class InUse {
 public:
  InUse(const void* obj, const char* what) : obj_(obj) {
    std::lock_guard<std::mutex> lock(mutex());
    if (!busy().insert(obj).second)
      throw std::runtime_error(std::string(what) + " is in use by another thread (use one per thread)");
  }
  ~InUse() {
    std::lock_guard<std::mutex> lock(mutex());
    busy().erase(obj_);
  }
  InUse(const InUse&) = delete;
  InUse& operator=(const InUse&) = delete;

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::set<const void*>& busy() {
    static std::set<const void*> s;
    return s;
  }
  const void* obj_;
};

// pybind11's tp_new uses the object tp_alloc returns without checking it for null, so a class
// instantiated when Python's heap is exhausted would crash. This tp_new first checks that the
// allocation succeeds (the freed block is what the real allocation then reuses) and otherwise
// raises MemoryError.
template <class Class>
void checked_tp_new(Class& cls) {
  static newfunc pybind_new = nullptr;
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  pybind_new = type->tp_new;
  type->tp_new = [](PyTypeObject* t, PyObject* args, PyObject* kwargs) -> PyObject* {
    PyObject* probe = t->tp_alloc(t, 0);
    if (!probe) return PyErr_NoMemory();
    t->tp_free(probe);
    return pybind_new(t, args, kwargs);
  };
}

}  // namespace rnnfast_py
