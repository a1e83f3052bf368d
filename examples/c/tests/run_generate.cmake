# ctest: `generate --greedy` prints what Python's greedy decoding of the same model printed.
execute_process(COMMAND ${GENERATE} ${MODEL} --greedy --prime hel --length 40
                OUTPUT_VARIABLE got ERROR_VARIABLE err RESULT_VARIABLE rc)
file(READ ${EXPECTED} want)
if(NOT rc EQUAL 0 OR NOT got STREQUAL want)
  message(FATAL_ERROR "generate exited ${rc} (${err}) and printed\n[${got}]\nPython printed\n[${want}]")
endif()
message(STATUS "generate --greedy: ${got}")
