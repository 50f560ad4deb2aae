// Tiny OpenVINO extension library: registers the GGUF frontend's own stateful + GenAI
// adaptation passes as DecoderTransformationExtensions, so Python can load them with
// FrontEnd.add_extension("/path/libgguf_genai_ext.so") before convert().
#include <openvino/core/extension.hpp>
#include <openvino/frontend/extension/decoder_transformation.hpp>
#include <openvino/frontend/gguf/adapt_to_genai.hpp>
#include <openvino/frontend/gguf/make_stateful.hpp>
#include <cstdlib>
#include <string>

using namespace ov::frontend::gguf::pass;

static std::vector<ov::Extension::Ptr> make_exts() {
    std::vector<ov::Extension::Ptr> v;
    v.push_back(std::make_shared<ov::frontend::DecoderTransformationExtension>(GGUFMakeStateful()));
    const char* mode = std::getenv("GGUF_EXT_MODE");  // "stateful" = only MakeStateful
    if (!(mode && std::string(mode) == "stateful"))
        v.push_back(std::make_shared<ov::frontend::DecoderTransformationExtension>(AdaptToGenAI()));
    return v;
}
OPENVINO_CREATE_EXTENSIONS(make_exts());
